"""One export in progress: what the exporters share (:class:`ExportJob`), verification of
every file against the dygraph model, the output directory's checks and the file table."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import EXIT_PARITY, CompressError
from ..fileio import sha256
from ..paths import Output, check_outputs, model_inputs
from ..progress import Progress
from ..runtimes.layout import EXPORT_JSON, WORK_DIR

EXPORT_FORMAT = "compress-export/1"
INPUT_NAME = "x"
PARITY_IMAGES = 256     # test images pushed through every runtime
MIN_ARGMAX_AGREEMENT = 0.999
PARITY_CHUNK = 64       # batch size for verification runs (with dynamic batch; the first chunk is a single image)


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (native errors can be pages long)."""
    text = str(e).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:400]
    return type(e).__name__


def error_lines(text: str, limit: int = 3) -> str:
    """The last lines of a native tool's output that mention an error, joined for a message."""
    lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower() and ln.strip()]
    return " | ".join(lines[-limit:])[:600]


def _chunks(n: int, batch: str | int) -> list[tuple[int, int]]:
    """Index ranges for verification runs: fixed-size for a fixed batch; 1, then 64s, for a dynamic one."""
    if batch != "dynamic":
        return [(i, min(i + batch, n)) for i in range(0, n, batch)]
    out, i = [], 0
    if n:
        out.append((0, 1))
        i = 1
    while i < n:
        out.append((i, min(i + PARITY_CHUNK, n)))
        i += PARITY_CHUNK
    return out


def batched(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: str | int) -> np.ndarray:
    """Run ``run`` over ``x`` in chunks; with a fixed batch, the last chunk is zero-padded and trimmed."""
    outs = []
    for a, b in _chunks(len(x), batch):
        xb = x[a:b]
        if batch != "dynamic" and len(xb) < batch:
            pad = np.zeros((batch - len(xb), *x.shape[1:]), x.dtype)
            outs.append(np.asarray(run(np.concatenate([xb, pad])))[:len(xb)])
        else:
            outs.append(np.asarray(run(xb)))
    return np.concatenate(outs).astype(np.float32, copy=False)


def compare(ref: np.ndarray, out: np.ndarray) -> dict:
    """Parity figures of ``out`` against the reference logits."""
    if out.shape != ref.shape:
        return {"n_inputs": int(len(ref)), "max_abs_diff": math.inf, "argmax_agreement": 0.0,
                "shape": list(out.shape), "expected_shape": list(ref.shape)}
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    finite = bool(np.isfinite(out).all())
    return {
        "n_inputs": int(len(ref)),
        "max_abs_diff": float(diff.max()) if finite and diff.size else (math.inf if not finite else 0.0),
        "mean_abs_diff": float(diff.mean()) if finite and diff.size else None,
        "max_rel_diff": float((diff / np.maximum(np.abs(ref), 1e-6)).max()) if finite and diff.size else None,
        "argmax_agreement": float((out.argmax(1) == ref.argmax(1)).mean()) if len(ref) else 1.0,
    }


@dataclass
class ExportJob:
    """Everything the exporters share while building one export in ``tmp``."""

    bundle: Any
    tmp: Path
    options: Any            # ExportOptions (validated): formats, opset, batch, atol, max_acc_drop, calib_data
    progress: Progress
    x_parity: np.ndarray = None
    ref: np.ndarray = None
    data: Any = None
    record: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple:
        return tuple(int(v) for v in self.bundle.input_shape)

    def path(self, rel: str, keep: bool) -> Path:
        """Where an artefact goes: in the export if it was asked for, else in the scratch area."""
        p = self.tmp / rel if keep else self.tmp / WORK_DIR / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def check_parity(self, runtime: str, out: np.ndarray) -> dict:
        """Record ``runtime``'s figures against the dygraph logits; fail (exit code 3) beyond the tolerances."""
        atol = self.options.atol
        fig = compare(self.ref, out)
        fig["passed"] = bool(fig["max_abs_diff"] <= atol and fig["argmax_agreement"] >= MIN_ARGMAX_AGREEMENT)
        self.record.setdefault("parity", {}).setdefault("runtimes", {})[runtime] = fig
        self.progress.log(f"parity {runtime}: max abs diff {fig['max_abs_diff']:.2e}, "
                          f"argmax agreement {fig['argmax_agreement'] * 100:.2f}% on {fig['n_inputs']} images")
        if not fig["passed"]:
            raise CompressError(
                f"{runtime} disagrees with the source model on {fig['n_inputs']} test images: max abs diff "
                f"{fig['max_abs_diff']:.3g} (allowed {atol:g}), same argmax on "
                f"{fig['argmax_agreement'] * 100:.2f}% (needed {MIN_ARGMAX_AGREEMENT * 100:.1f}%); nothing written",
                EXIT_PARITY)
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
