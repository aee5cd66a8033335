"""One export in progress: what the exporters share (:class:`ExportJob`), verification of
every file against the dygraph model, the output directory's checks and the file table."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..common.errors import CompressError
from ..common.fileio import sha256
from ..model.paths import Output, check_outputs, model_inputs
from ..common.progress import Progress
from ..runtimes.layout import EXPORT_JSON, WORK_DIR
from .parity import compare, parity_error
from .record import ExportRecord

INPUT_NAME = "x"
PARITY_CHUNK = 64       # batch size for verification runs (with dynamic batch; the first chunk is a single image),
CHUNK_ELEMENTS = 2_000_000  # at most, and at most this many input elements: 13 images at 3x224x224. Paddle
                            # Inference in legacy mode kept a 64-image batch's activations of MobileNetV2 at 224
                            # alive: its verification process peaked at 5.4 GB.


def verify_threads() -> int:
    """Threads for verification runs (not timing): every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def first_line(e: BaseException) -> str:
    """The line of an exception's message that says what went wrong (native errors can be pages long).

    Mostly the first non-empty line; for Paddle's static-graph errors, which open with "In user code:"
    and a stack, the ``...Error: ...`` line at the end (and the op it names).
    """
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    if lines[0].startswith("In user code"):
        errors = [ln for ln in lines if re.match(r"^\w*(Error|Exception)\b", ln)]
        ops = [ln for ln in lines if ln.startswith("[operator <")]
        if errors:
            return " ".join([errors[-1]] + ops[-1:])[:400]
    return lines[0][:400]


def error_lines(text: str, limit: int = 3) -> str:
    """The last lines of a native tool's output that mention an error, joined for a message."""
    lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower() and ln.strip()]
    return " | ".join(lines[-limit:])[:600]


def _chunks(n: int, batch: str | int, per_image: int = 1) -> list[tuple[int, int]]:
    """Index ranges for verification runs: fixed-size for a fixed batch; for a dynamic one, 1 image, then
    chunks of up to PARITY_CHUNK images and CHUNK_ELEMENTS input elements."""
    if batch != "dynamic":
        return [(i, min(i + batch, n)) for i in range(0, n, batch)]
    size = max(1, min(PARITY_CHUNK, CHUNK_ELEMENTS // max(per_image, 1)))
    out, i = [], 0
    if n:
        out.append((0, 1))
        i = 1
    while i < n:
        out.append((i, min(i + size, n)))
        i += size
    return out


def batched(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: str | int) -> np.ndarray:
    """Run ``run`` over ``x`` in chunks; with a fixed batch, the last chunk is zero-padded and trimmed."""
    outs = []
    for a, b in _chunks(len(x), batch, int(np.prod(x.shape[1:]))):
        xb = x[a:b]
        if batch != "dynamic" and len(xb) < batch:
            pad = np.zeros((batch - len(xb), *x.shape[1:]), x.dtype)
            outs.append(np.asarray(run(np.concatenate([xb, pad])))[:len(xb)])
        else:
            outs.append(np.asarray(run(xb)))
    return np.concatenate(outs).astype(np.float32, copy=False)


@dataclass
class ExportJob:
    """Everything the exporters share while building one export in ``tmp``."""

    bundle: Any
    tmp: Path
    options: Any            # ExportOptions (validated): formats, opset, batch, tolerance, int8, calib_data
    progress: Progress
    x_parity: np.ndarray = None
    ref: np.ndarray = None
    data: Any = None        # compress.data.ModelData: the model's source through its own eval preprocessing
    record: ExportRecord | None = None   # export.json, filled in as the exporters run
    arrays: dict = field(default_factory=dict)   # image sets decoded once per export (INT8 scoring, calibration)

    @property
    def input_shape(self) -> tuple:
        return tuple(int(v) for v in self.bundle.input_shape)

    def path(self, rel: str, keep: bool) -> Path:
        """Where an artefact goes: in the export if it was asked for, else in the scratch area."""
        p = self.tmp / rel if keep else self.tmp / WORK_DIR / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def check_parity(self, runtime: str, out: np.ndarray) -> dict:
        """Record ``runtime``'s figures against the dygraph logits; fail (exit code 3) beyond the tolerance
        (:mod:`compress.export.parity`)."""
        tol = self.options.tolerance
        fig = compare(self.ref, out, tol)
        self.record.add_parity(runtime, fig)
        self.progress.log(f"parity {runtime}: max abs diff {fig['max_abs_diff']:.2e} "
                          f"({fig['worst_tolerance_use'] * 100:.1f}% of the tolerance), argmax agreement "
                          f"{fig['argmax_agreement'] * 100:.2f}% on {fig['n_inputs']} images")
        if not fig["passed"]:
            raise parity_error(runtime, fig, tol)
        return fig


def check_out_dir(out_dir: Path, force: bool, model_path: Path | None, param: str = "out_dir") -> None:
    """Refuse an output directory that cannot or must not be (re)written, before any work is done.

    ``param`` names the parameter that gave the directory, for the messages.
    """
    where = f"`{param}` {out_dir}"
    if out_dir.exists() and not out_dir.is_dir():
        raise CompressError(f"{where} exists and is not a directory", param=param)
    parent = out_dir.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CompressError(f"{where}: cannot create it, {parent} is not a directory", param=param)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CompressError(f"{where}: cannot create it, {parent} is not writable", param=param)
    if model_path is not None:
        check_outputs([Output(out_dir, param, tree=True)], model_inputs(model_path, "the source model"))
    if out_dir.is_dir():
        _check_previous_export(out_dir, force, where, param)


def _check_previous_export(out_dir: Path, force: bool, where: str, param: str) -> None:
    try:
        entries = list(out_dir.iterdir())
    except OSError as e:
        raise CompressError(f"{where}: cannot read it ({e.strerror})", param=param) from None
    if entries and not force:
        raise CompressError(f"{where} exists and is not empty; choose a new directory or set `force` to replace a "
                            "previous export", param=(param, "force"))
    if entries and not (out_dir / EXPORT_JSON).is_file():
        raise CompressError(f"{where} is not empty and is not a previous export (no {EXPORT_JSON}); "
                            "refusing to replace it even with `force`", param=(param, "force"))


def file_table(root: Path) -> dict:
    """Size and sha256 of every exported file (not export.json, not the scratch area)."""
    files = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(WORK_DIR + "/") and rel != EXPORT_JSON:
            files[rel] = {"bytes": p.stat().st_size, "sha256": sha256(p)}
    return files
