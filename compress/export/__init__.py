"""Export for edge devices: Paddle Inference (PIR and legacy), ONNX, and INT8 that pays, each verified
before success.

``export_model`` writes, into one directory that appears complete or not at all::

    out_dir/paddle/model.json, model.pdiparams           Paddle Inference (PIR format, ``paddle.jit.save``)
    out_dir/paddle-legacy/model.pdmodel, model.pdiparams  the legacy format, for Paddle Lite's opt (``--format``)
    out_dir/paddle-int8/model.pdmodel, model.pdiparams    INT8 by PaddleSlim (``int8``, Paddle formats)
    out_dir/model.onnx                                    ONNX, converted by paddle2onnx from the PIR pair
    out_dir/model.int8.onnx                               INT8 for ONNX Runtime (``int8``)
    out_dir/export.json                                   versions, options, input spec, parity, INT8 candidates,
                                                          sizes, hashes, graph stats

Nothing is reported as exported until the same real images (from the test split of the
model's own data, through the preprocessing its sidecar records) have gone through the dygraph model and every runtime (Paddle Inference
with oneDNN off and on, in PIR and in legacy mode, and ONNX Runtime), and every runtime's
logits passed the parity rule of :mod:`.parity` (closeness relative to the logits'
magnitude, argmax and top-5 agreement). INT8 models are built as candidates, accuracy-gated
and timed on this CPU, and kept only when they pay (:mod:`.int8`). Everything is built in a
hidden temporary directory next to ``out_dir`` and moved into place only when all checks pass.

One module per format: :mod:`.paddle`, :mod:`.legacy` (the legacy-mode subprocess,
:mod:`.legacy_worker`, :mod:`.legacy_ir`), :mod:`.onnx` (with the notes on opsets),
:mod:`.ort_int8` and :mod:`.paddle_int8` (with the notes on the schemes); :mod:`.job` holds what
they share, :mod:`.parity` the verification rule and :mod:`.graph_stats` the op counts. The
formats live in a registry (``EXPORTERS``, :mod:`.formats`, with :class:`ExportOptions`).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from paddle import __version__ as _paddle_version  # (the name paddle is this package's submodule)

from .._version import __version__
from ..data import ModelData
from ..common.errors import CompressError
from ..common.fileio import atomic_dir, json_default, owned, sha256
from ..model.bundle import ModelBundle, load_model
from ..common.native import capture_stdout
from ..common.progress import NULL, Progress
from ..runtimes import onnx_session, paddle_predictor, run_dygraph, run_onnx, run_paddle_inference  # noqa: F401
from ..runtimes.layout import EXPORT_JSON, WORK_DIR
from ..model.sidecar import sidecar_path
from .graph_stats import graph_stats
from .formats import DEFAULT_FORMATS, EXPORTERS, FORMATS, ExportOptions, Exporter, parse_batch
from .job import INPUT_NAME, ExportJob, batched, check_out_dir, file_table
from .onnx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from .parity import Tolerance
from .record import ExportRecord


def _needed(options: ExportOptions) -> list[str]:
    """The exporters to run, in order: the formats asked for, what they need, and the INT8 builders that apply."""
    need = set(options.formats)
    if options.int8 != "off":
        need.update(name for name, e in EXPORTERS.items() if set(e.int8_for) & need)
    for name in reversed(list(EXPORTERS)):
        if name in need:
            need.update(EXPORTERS[name].requires)
    return [f for f in EXPORTERS if f in need]


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
        data = ModelData.of_model(bundle)
    except CompressError as e:
        raise CompressError(f"cannot load the model's data ({source!r}, named in its sidecar) to verify the export "
                            f"on: {e}") from None
    if data.size("test") == 0:
        raise CompressError(f"data {source!r} has no test images to verify the export with")
    return bundle, data


def _new_record(bundle: ModelBundle, src_path: Path | None, options: ExportOptions) -> ExportRecord:
    """``export.json`` before anything is built (filled in as the exporters run)."""
    sidecar, batch = bundle.sidecar, options.batch
    sc = sidecar_path(src_path) if src_path is not None else None
    in_memory = str(bundle.path) + " (modified in memory)" if bundle.path else None
    return ExportRecord(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        source={"path": str(src_path) if src_path else in_memory,
                   "sha256": sha256(src_path) if src_path else None,
                   "sidecar_sha256": sha256(sc) if sc is not None and sc.is_file() else None,
                   "arch": sidecar.arch, "removed_blocks": list(sidecar.removed_blocks or []),
                   **({"removed_branches": list(sidecar.removed_branches)} if sidecar.removed_branches else {}),
                "num_classes": bundle.num_classes},
        versions=_versions(), formats=options.formats, options=options.to_json(), opset_requested=options.opset,
        batch=batch,
        input={"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW",
               "shape": [None if batch == "dynamic" else batch, *bundle.input_shape], "preprocess": sidecar.preprocess},
        output_shape=[None if batch == "dynamic" else batch, bundle.num_classes], labels=sidecar.class_names)


def _start_job(bundle, tmp: Path, options: ExportOptions, data, record: ExportRecord, progress: Progress) -> ExportJob:
    """The job, with the dygraph model's reference logits on the parity images."""
    x_parity, _ = data.arrays("test", options.parity_count(data.size("test"), bundle.sidecar.flops))
    ref = batched(lambda xb: run_dygraph(bundle.model, xb), x_parity, "dynamic")
    record.start_parity(f"{data.spec} test split", len(x_parity), options.tolerance.to_json(), "paddle dygraph")
    return ExportJob(bundle=bundle, tmp=tmp, options=options, progress=progress, x_parity=x_parity, ref=ref,
                     data=data, record=record)


def _build(job: ExportJob, advance) -> dict:
    """Run every exporter the formats need, in order; returns seconds per format."""
    needed = _needed(job.options)
    seconds = {}
    for name in needed:
        t0 = time.perf_counter()
        job.progress.log(f"building {name}")
        EXPORTERS[name].build(job, name in job.options.formats or bool(EXPORTERS[name].int8_for))
        seconds[name] = round(time.perf_counter() - t0, 3)
        advance(1, step=name)
    if "onnx" not in needed:
        job.record.has_onnx = False
    if not any(EXPORTERS[n].int8_for for n in needed):
        job.record.has_int8 = False
    return seconds


def _finish(job: ExportJob, seconds: dict, t_start: float) -> None:
    """Drop the scratch area; record files, graphs and times; write export.json."""
    shutil.rmtree(job.tmp / WORK_DIR, ignore_errors=True)
    job.record.files = file_table(job.tmp)
    job.record.graphs = graph_stats(job.tmp)
    job.record.seconds = {**seconds, "total": round(time.perf_counter() - t_start, 3)}
    (job.tmp / EXPORT_JSON).write_text(json.dumps(job.record.to_json(), indent=2, default=json_default) + "\n")


def export_model(model_path, out_dir, options: ExportOptions | None = None, progress: Progress = NULL,
                 **kwargs) -> dict:
    """Export a compress model for edge devices; verify every file; return the ``export.json`` content.

    ``model_path`` is a ``.pdparams``/``.safetensors`` written by compress (with its sidecar),
    or an already loaded :class:`compress.model.bundle.ModelBundle`. ``options`` (an
    :class:`ExportOptions`) or its fields as keyword arguments (``formats=``, ``int8=True``,
    ``opset=``, ...) say what to write. Raises :class:`CompressError` (exit code 3 on a parity
    failure, 4 when INT8 loses too much accuracy); on any failure ``out_dir`` is left as it was.
    """
    t_start = time.perf_counter()
    options = ExportOptions(**kwargs) if options is None else dataclasses.replace(options, **kwargs)
    out_dir = Path(out_dir)
    src_path = None if isinstance(model_path, ModelBundle) else Path(model_path)
    check_out_dir(out_dir, options.force, src_path)
    with owned(out_dir):   # from here to the publish: a second export to the same directory is refused
        return _export_owned(model_path, out_dir, src_path, options, progress, t_start)


def _export_owned(model_path, out_dir: Path, src_path, options: ExportOptions, progress: Progress,
                  t_start: float) -> dict:
    check_out_dir(out_dir, options.force, src_path)   # again, now that nobody else writes it
    existed = out_dir.exists()
    bundle, data = _load_source(model_path, progress)
    record = _new_record(bundle, src_path, options)
    record.input["preprocess"] = data.preprocess.to_json()   # the full recipe the parity images went through
    try:
        with progress.task("exporting", len(_needed(options)) + 2) as advance, \
                atomic_dir(out_dir, replace=options.force or existed) as tmp, capture_stdout():
            job = _start_job(bundle, tmp.resolve(), options, data, record, progress)
            advance(1, step="reference")
            seconds = _build(job, advance)
            _finish(job, seconds, t_start)
            advance(1, step="export.json")
    except OSError as e:
        where = e.filename or out_dir
        raise CompressError(f"cannot write the export to {out_dir}: {e.strerror or e} ({where}); nothing written") from None
    progress.log(f"wrote {out_dir}")
    return record.to_json()


__all__ = ["export_model", "ExportOptions", "Tolerance", "EXPORTERS", "Exporter", "DEFAULT_FORMATS", "DEFAULT_OPSET",
           "MIN_OPSET", "MAX_OPSET", "FORMATS", "check_out_dir", "graph_stats", "parse_batch",
           # the runtimes every export is verified on, to run what was exported
           "run_dygraph", "paddle_predictor", "run_paddle_inference", "onnx_session", "run_onnx"]
