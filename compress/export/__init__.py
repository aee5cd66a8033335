"""Export for edge devices: Paddle Inference, ONNX and INT8 ONNX, each verified before success.

``export_model`` writes, into one directory that appears complete or not at all::

    out_dir/paddle/model.json, model.pdiparams   Paddle Inference (PIR format, ``paddle.jit.save``)
    out_dir/model.onnx                            ONNX, converted by paddle2onnx from the pair above
    out_dir/model.int8.onnx                       optional: INT8 (QDQ) by onnxruntime's static quantization
    out_dir/export.json                           versions, input spec, parity, accuracy, sizes, hashes, graph stats

Nothing is reported as exported until the same real images (from the test split of
the model's own data) have gone through the dygraph model, Paddle Inference (oneDNN
off and on) and ONNX Runtime, and every runtime's logits matched the dygraph model's
(max abs diff <= ``atol`` and the same argmax on >= 99.9 % of the images). The INT8
model is kept only if its test accuracy is within ``max_acc_drop`` of the FP32 ONNX
model's. Everything is built in a hidden temporary directory next to ``out_dir`` and
moved into place only when all checks pass.

One module per format: :mod:`.paddle`, :mod:`.onnx` (with the notes on opsets),
:mod:`.int8` (with the notes on quantization); :mod:`.job` holds what they share and
:mod:`.graph_stats` the op counts. The formats live in a registry (``EXPORTERS``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from paddle import __version__ as _paddle_version  # (the name paddle is this package's submodule)

from .._version import __version__
from ..data import load_data, source_kind
from ..errors import CompressError
from ..fileio import atomic_dir, json_default, sha256
from ..models import ModelBundle, load_model
from ..native import capture_stdout
from ..progress import NULL, Progress
from ..runtimes import onnx_session, paddle_predictor, run_dygraph, run_onnx, run_paddle_inference  # noqa: F401
from ..runtimes.layout import EXPORT_JSON, INT8_FILE, ONNX_FILE, PADDLE_MODEL, PADDLE_PARAMS, WORK_DIR
from ..sidecar import sidecar_path
from .graph_stats import graph_stats
from .int8 import export_int8
from .job import (EXPORT_FORMAT, INPUT_NAME, MIN_ARGMAX_AGREEMENT, PARITY_IMAGES, ExportJob, batched, check_out_dir,
                  file_table)
from .onnx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, check_opset, export_onnx
from .paddle import export_paddle


@dataclass(frozen=True)
class Exporter:
    name: str
    build: Callable[[ExportJob, bool], None]
    files: tuple
    requires: tuple = ()
    description: str = ""


# Order matters: each exporter may need the ones before it (``requires``).
EXPORTERS: dict[str, Exporter] = {
    "paddle": Exporter("paddle", export_paddle, (PADDLE_MODEL, PADDLE_PARAMS), (),
                       "Paddle Inference (paddle/model.json + model.pdiparams)"),
    "onnx": Exporter("onnx", export_onnx, (ONNX_FILE,), ("paddle",), "ONNX via paddle2onnx (model.onnx)"),
    "int8": Exporter("int8", export_int8, (INT8_FILE,), ("onnx",),
                     "INT8 ONNX, onnxruntime static quantization (model.int8.onnx)"),
}
DEFAULT_FORMATS = ("paddle", "onnx")


def parse_formats(formats, int8: bool = False) -> list[str]:
    """Formats in canonical order from a list or comma-separated text; ``int8=True`` adds ``int8``."""
    if isinstance(formats, str):
        formats = [f for f in formats.replace(" ", "").split(",") if f]
    formats = list(dict.fromkeys(list(formats or ()) + (["int8"] if int8 else [])))
    bad = [f for f in formats if f not in EXPORTERS]
    if bad:
        raise CompressError(f"unknown export format {bad[0]!r}: use {', '.join(EXPORTERS)} (comma-separated)",
                            param="formats")
    if not formats:
        raise CompressError(f"no export format given: use {', '.join(EXPORTERS)}", param="formats")
    return [f for f in EXPORTERS if f in formats]  # canonical order


def parse_batch(value) -> str | int:
    """``"dynamic"`` / ``None`` -> ``"dynamic"``; a positive integer (or its text) -> int."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "dynamic"):
        return "dynamic"
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(n) != str(value).strip():
        raise CompressError(f"`batch` must be 'dynamic' or a positive integer, got {value!r}", param="batch")
    return n


def _needed(formats: list[str]) -> list[str]:
    need = set(formats)
    for name in reversed(list(EXPORTERS)):
        if name in need:
            need.update(EXPORTERS[name].requires)
    return [f for f in EXPORTERS if f in need]


@dataclass
class ExportOptions:
    """What to export and how strictly to verify it. Validates (and normalises) itself on
    construction; errors name the parameter.

    ``formats``: keys of :data:`EXPORTERS` (a list or comma-separated text); ``int8=True``
    adds ``"int8"``. ``max_acc_drop`` is a fraction (0.01 = one accuracy point).
    ``calib_data``: the INT8 calibration images (default: the model's own data).
    ``force``: replace a previous export in the output directory.
    """

    formats: Sequence[str] | str = DEFAULT_FORMATS
    opset: int = DEFAULT_OPSET
    batch: str | int = "dynamic"
    int8: bool = False
    calib_data: str | None = None
    max_acc_drop: float = 0.01
    atol: float = 1e-4
    force: bool = False

    def __post_init__(self):
        self.formats = parse_formats(self.formats, self.int8)
        self.int8 = "int8" in self.formats
        self.opset = check_opset(self.opset)
        self.batch = parse_batch(self.batch)
        try:
            self.atol, self.max_acc_drop = float(self.atol), float(self.max_acc_drop)
        except (TypeError, ValueError):
            raise CompressError(f"`atol` and `max_acc_drop` must be numbers, got {self.atol!r} and "
                                f"{self.max_acc_drop!r}", param=("atol", "max_acc_drop")) from None
        if not (self.atol >= 0 and math.isfinite(self.atol)):
            raise CompressError(f"`atol` must be a non-negative number, got {self.atol:g}", param="atol")
        if not 0 <= self.max_acc_drop <= 1:
            raise CompressError(f"`max_acc_drop` must be between 0 and 100 points, got {self.max_acc_drop * 100:g}",
                                param="max_acc_drop")
        if self.calib_data is not None:
            self.calib_data = _calib_source(self.calib_data, self.formats)


def _calib_source(calib_data, formats: list[str]) -> str:
    if "int8" not in formats:
        raise CompressError("`calib_data` is for `int8` (calibration images); add `int8` or leave it out",
                            param=("calib_data", "int8"))
    try:
        source_kind(str(calib_data))
    except CompressError as e:
        raise CompressError(f"`calib_data`: {e}", param="calib_data") from None
    return str(calib_data)


def _versions() -> dict:
    import onnx  # optional heavy: recorded only when exporting
    import onnxruntime  # optional heavy: recorded only when exporting
    import paddle2onnx  # optional heavy: recorded only when exporting

    return {"compress": __version__, "python": sys.version.split()[0], "paddlepaddle": _paddle_version,
            "paddle2onnx": paddle2onnx.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}


def _load_source(model_path, progress: Progress):
    """The model and its data (whose test split verifies the export)."""
    given = isinstance(model_path, ModelBundle)
    progress.log(f"loading {'model' if given else model_path}")
    bundle = model_path if given else load_model(model_path)
    source = bundle.sidecar.data_source
    if not source:
        raise CompressError("the sidecar names no data source: real test images are needed to verify the export")
    try:
        data = load_data(source, bundle.input_shape)
    except CompressError as e:
        raise CompressError(f"cannot load the model's data ({source!r}, named in its sidecar) to verify the export "
                            f"on: {e}") from None
    if len(data.x_test) == 0:
        raise CompressError(f"data {source!r} has no test images to verify the export with")
    return bundle, data


def _new_record(bundle: ModelBundle, src_path: Path | None, options: ExportOptions) -> dict:
    """``export.json`` before anything is built (filled in as the exporters run)."""
    sidecar, batch = bundle.sidecar, options.batch
    sc = sidecar_path(src_path) if src_path is not None else None
    in_memory = str(bundle.path) + " (modified in memory)" if bundle.path else None
    return {
        "format": EXPORT_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": {"path": str(src_path) if src_path else in_memory,
                   "sha256": sha256(src_path) if src_path else None,
                   "sidecar_sha256": sha256(sc) if sc is not None and sc.is_file() else None,
                   "arch": sidecar.arch, "removed_blocks": list(sidecar.removed_blocks or []),
                   "num_classes": bundle.num_classes},
        "versions": _versions(),
        "formats": options.formats,
        "opset": None,
        "opset_requested": options.opset,
        "batch": batch,
        "input": {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW",
                  "shape": [None if batch == "dynamic" else batch, *bundle.input_shape],
                  "preprocess": sidecar.preprocess},
        "output": {"shape": [None if batch == "dynamic" else batch, bundle.num_classes], "names": {}},
        "labels": sidecar.class_names,
        "parity": None,
        "int8": None,
        "files": None,
        "graphs": None,
        "seconds": None,
    }


def _start_job(bundle, tmp: Path, options: ExportOptions, data, record: dict, progress: Progress) -> ExportJob:
    """The job, with the dygraph model's reference logits on the parity images."""
    x_parity = data.x_test[:PARITY_IMAGES]
    ref = batched(lambda xb: run_dygraph(bundle.model, xb), x_parity, "dynamic")
    record["parity"] = {"data": f"{data.source} test split", "n_inputs": int(len(x_parity)), "atol": options.atol,
                        "min_argmax_agreement": MIN_ARGMAX_AGREEMENT, "reference": "paddle dygraph", "runtimes": {}}
    return ExportJob(bundle=bundle, tmp=tmp, options=options, progress=progress, x_parity=x_parity, ref=ref,
                     data=data, record=record)


def _build(job: ExportJob, advance) -> dict:
    """Run every exporter the formats need, in order; returns seconds per format."""
    needed = _needed(job.options.formats)
    seconds = {}
    for name in needed:
        t0 = time.perf_counter()
        job.progress.log(f"building {name}")
        EXPORTERS[name].build(job, name in job.options.formats)
        seconds[name] = round(time.perf_counter() - t0, 3)
        advance(1, step=name)
    if "onnx" not in needed:
        job.record.pop("opset")
        job.record.pop("opset_requested")
    if "int8" not in needed:
        job.record.pop("int8")
    return seconds


def _finish(job: ExportJob, seconds: dict, t_start: float) -> None:
    """Drop the scratch area; record files, graphs and times; write export.json."""
    shutil.rmtree(job.tmp / WORK_DIR, ignore_errors=True)
    job.record["files"] = file_table(job.tmp)
    job.record["graphs"] = graph_stats(job.tmp)
    job.record["seconds"] = {**seconds, "total": round(time.perf_counter() - t_start, 3)}
    (job.tmp / EXPORT_JSON).write_text(json.dumps(job.record, indent=2, default=json_default) + "\n")


def export_model(model_path, out_dir, options: ExportOptions | None = None, progress: Progress = NULL,
                 **kwargs) -> dict:
    """Export a compress model for edge devices; verify every file; return the ``export.json`` content.

    ``model_path`` is a ``.pdparams``/``.safetensors`` written by compress (with its sidecar),
    or an already loaded :class:`compress.models.ModelBundle`. ``options`` (an
    :class:`ExportOptions`) or its fields as keyword arguments (``formats=``, ``int8=True``,
    ``opset=``, ...) say what to write. Raises :class:`CompressError` (exit code 3 on a parity
    failure, 4 when INT8 loses too much accuracy); on any failure ``out_dir`` is left as it was.
    """
    t_start = time.perf_counter()
    options = ExportOptions(**kwargs) if options is None else dataclasses.replace(options, **kwargs)
    out_dir = Path(out_dir)
    src_path = None if isinstance(model_path, ModelBundle) else Path(model_path)
    check_out_dir(out_dir, options.force, src_path)
    bundle, data = _load_source(model_path, progress)
    record = _new_record(bundle, src_path, options)
    try:
        with progress.task("exporting", len(_needed(options.formats)) + 2) as advance, \
                atomic_dir(out_dir) as tmp, capture_stdout():
            job = _start_job(bundle, tmp.resolve(), options, data, record, progress)
            advance(1, step="reference")
            seconds = _build(job, advance)
            _finish(job, seconds, t_start)
            advance(1, step="export.json")
    except OSError as e:
        where = e.filename or out_dir
        raise CompressError(f"cannot write the export to {out_dir}: {e.strerror or e} ({where}); nothing written") from None
    progress.log(f"wrote {out_dir}")
    return record


__all__ = ["export_model", "ExportOptions", "EXPORTERS", "Exporter", "DEFAULT_FORMATS", "DEFAULT_OPSET", "MIN_OPSET",
           "MAX_OPSET", "check_out_dir", "graph_stats", "parse_batch", "parse_formats",
           # the runtimes every export is verified on, to run what was exported
           "run_dygraph", "paddle_predictor", "run_paddle_inference", "onnx_session", "run_onnx"]
