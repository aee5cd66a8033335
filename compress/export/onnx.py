"""ONNX export: paddle2onnx from the Paddle pair, checked (file, ``onnx.checker``,
onnxruntime) and verified against the dygraph model.

ONNX opset
----------
paddle2onnx 2.1.0 accepts opsets 7..21; asked for anything above 21 it does not raise
but *aborts the process* (SIGABRT, "The Opset Version must be between 7 and 21"), so the
range is checked here before it is called. Below 11 it silently upgrades to 11 (the
sample architectures need opset-11 ops), so 11 is the lowest accepted. Every opset
11..21 was converted and run by onnxruntime 1.32 for both sample architectures
(``resnet_tiny``, ``vit_tiny``) with logits within 1e-5 of Paddle. The default is the
highest of them, 21. From 17 on, LayerNorm is one ``LayerNormalization`` node
(ViT: 496 nodes instead of 666); 17..21 give the same graph for both architectures and
differ only in the opset/IR-version stamp (IR 8 at 17, IR 10 at 21; IR 10 needs
onnxruntime >= 1.16 on the device). Pass ``opset=17`` for older edge runtimes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.errors import CompressError
from ..common.native import capture_stdout, no_runtime_installs
from ..runtimes import onnx as ort_runtime
from ..runtimes.layout import ONNX_FILE, PADDLE_MODEL
from .job import ExportJob, batched, error_lines, first_line

MIN_OPSET = 11
MAX_OPSET = 21          # paddle2onnx 2.1.0 aborts the process above 21
DEFAULT_OPSET = 21      # highest opset verified with paddle2onnx 2.1.0 + onnxruntime 1.32 on both sample archs


def check_opset(opset: int) -> int:
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise CompressError(f"`opset` {opset} is not supported: use {MIN_OPSET}..{MAX_OPSET} "
                            f"(paddle2onnx 2.1.0 converts up to {MAX_OPSET}; default {DEFAULT_OPSET})", param="opset")
    return int(opset)


def _paddle2onnx(model_file: Path, params_file: Path, save_file: Path, opset: int) -> str:
    """Run paddle2onnx; return what it printed (it reports most failures only there)."""
    import paddle2onnx  # optional heavy: only converting to ONNX needs it

    with no_runtime_installs(), capture_stdout() as cap:
        try:
            paddle2onnx.export(str(model_file), str(params_file), save_file=str(save_file), opset_version=opset,
                               auto_upgrade_opset=True, enable_onnx_checker=True, enable_optimize=True,
                               verbose=False)
        except Exception as e:  # noqa: BLE001
            log = error_lines(cap.text())
            raise CompressError(f"paddle2onnx failed: {type(e).__name__}: {first_line(e)}"
                                f"{' (' + log + ')' if log else ''}; nothing written") from None
        return cap.text()


def _check_onnx(save_file: Path, log: str):
    """The converted file exists, passes ``onnx.checker`` and loads in onnxruntime; returns the session."""
    import onnx  # optional heavy: only checking an ONNX file needs it

    if not save_file.is_file() or save_file.stat().st_size == 0:
        errors = error_lines(log)
        raise CompressError(f"paddle2onnx wrote no ONNX model{' (' + errors + ')' if errors else ''}; nothing written")
    try:
        onnx.checker.check_model(str(save_file), full_check=True)
    except Exception as e:  # noqa: BLE001
        raise CompressError(f"paddle2onnx wrote an invalid ONNX model: {first_line(e)}; nothing written") from None
    try:
        session = ort_runtime.onnx_session(save_file)
    except Exception as e:  # noqa: BLE001
        raise CompressError(f"onnxruntime cannot load the exported model: {first_line(e)}; nothing written") from None
    model = onnx.load(str(save_file), load_external_data=False)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)
    return session, opset


def export_onnx(job: ExportJob, keep: bool) -> None:
    """paddle2onnx from the Paddle pair; checked (file, onnx.checker, onnxruntime) and verified."""
    model_file = job.path(PADDLE_MODEL, "paddle" in job.options.formats)
    params_file = model_file.with_suffix(".pdiparams")
    save_file = job.path(ONNX_FILE, keep)
    log = _paddle2onnx(model_file, params_file, save_file, job.options.opset)
    session, actual = _check_onnx(save_file, log)
    actual = actual if actual is not None else job.options.opset
    if actual != job.options.opset:
        job.progress.log(f"paddle2onnx raised the opset from {job.options.opset} to {actual} (the model needs it)")
    job.record.set_onnx(actual, session.get_inputs()[0].shape)
    job.record.set_output_name("onnx", session.get_outputs()[0].name)
    # verified even when only an intermediate (for INT8): the quantized model is built from it
    out = batched(lambda xb: ort_runtime.run_onnx(session, xb), job.x_parity, job.options.batch)
    job.check_parity("onnxruntime", out)
    job.progress.log("ONNX Runtime verified")
