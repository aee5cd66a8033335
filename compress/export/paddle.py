"""Paddle Inference export: ``paddle.jit.save`` with an InputSpec named ``x``, then verified in
Paddle Inference with oneDNN off and on."""
from __future__ import annotations

from pathlib import Path

import paddle

from ..common.errors import EXIT_PARITY, CompressError
from ..runtimes import paddle as paddle_runtime
from ..runtimes.layout import PADDLE_MODEL
from .job import INPUT_NAME, ExportJob, batched, first_line, verify_threads


def _jit_save(job: ExportJob, keep: bool) -> tuple[Path, Path]:
    """Write ``paddle/model.json`` + ``model.pdiparams`` (PIR); returns their paths."""
    model_file = job.path(PADDLE_MODEL, keep)
    prefix = model_file.with_suffix("")
    batch = job.options.batch
    shape = [None if batch == "dynamic" else int(batch), *job.input_shape]
    spec = [paddle.static.InputSpec(list(shape), "float32", name=INPUT_NAME)]
    try:
        # jit.save traces a static copy of forward (AST translation, full graph); the dygraph model is untouched
        paddle.jit.save(job.bundle.model, str(prefix), input_spec=spec)
    except Exception as e:  # noqa: BLE001 - paddle raises many types while tracing
        raise CompressError(f"paddle.jit.save could not convert the model to a static graph: "
                            f"{type(e).__name__}: {first_line(e)}") from None
    params_file = prefix.with_suffix(".pdiparams")
    if not model_file.is_file() or not params_file.is_file():
        found = sorted(p.name for p in model_file.parent.iterdir())
        raise CompressError(f"paddle.jit.save did not write model.json + model.pdiparams (found {found}); "
                            "is FLAGS_enable_pir_api set to 0?")
    job.record.set_input_shape(shape)
    return model_file, params_file


def _verify(job: ExportJob, model_file: Path, params_file: Path, onednn: bool) -> None:
    name = "paddle_inference_onednn" if onednn else "paddle_inference"
    try:
        pred = paddle_runtime.paddle_predictor(model_file, params_file, onednn=onednn, threads=verify_threads())
        job.record.set_output_name("paddle", pred.get_output_names()[0])
        handles = paddle_runtime.io_handles(pred)
        out = batched(lambda xb: paddle_runtime.run_paddle_inference(pred, xb, handles), job.x_parity,
                      job.options.batch)
    except Exception as e:  # noqa: BLE001
        hint = (" (a known Paddle 3.3.x oneDNN issue; see README: pin paddlepaddle 3.2.2 or export ONNX only)"
                if onednn else "")
        raise CompressError(f"Paddle Inference ({'oneDNN' if onednn else 'no oneDNN'}) cannot run the exported "
                            f"model: {type(e).__name__}: {first_line(e)}{hint}; nothing written", EXIT_PARITY) from None
    job.check_parity(name, out)
    job.progress.log(f"Paddle Inference {'with' if onednn else 'without'} oneDNN verified")


def export_paddle(job: ExportJob, keep: bool) -> None:
    """``paddle.jit.save`` with an InputSpec named ``x``; verified in Paddle Inference, oneDNN off and on.

    Not verified when it is only an intermediate (for an ONNX-only export): the ONNX model is.
    """
    model_file, params_file = _jit_save(job, keep)
    if not keep:
        return
    for onednn in (False, True):
        _verify(job, model_file, params_file, onednn)
