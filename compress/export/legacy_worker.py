"""The export's legacy-mode subprocess: ``python -m compress.export.legacy_worker REQUEST.json``.

Started by :mod:`.legacy` and :mod:`.paddle_int8` with ``FLAGS_enable_pir_api=0`` in its environment:
Paddle reads the flag once, when it is imported, so the legacy program (``model.pdmodel``) and
PaddleSlim's static-graph quantization (which needs a legacy ``Program``) can only happen in a
process of their own; the parent process stays on the PIR path untouched.

Tasks (``task`` in the request):

* ``save``: rebuild the model from its weights and sidecar, trace it into ``model.pdmodel`` +
  ``model.pdiparams`` (``paddle.jit.save`` with ``clip_extra=False``: Paddle Lite's opt needs the
  attributes the default clips, e.g. on MobileNetV2), and run it in Paddle Inference (oneDNN off
  and on) on the parity images;
* ``ptq``: PaddleSlim post-training quantization of that FP32 model with one scheme, calibrated on
  the given training images, and the INT8 model's logits (oneDNN + ``enable_mkldnn_int8``) on the
  test and parity images.

Arrays travel as ``.npz`` files, the answer as ``RESULT.json`` (``ok``, figures, or ``error``).
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import paddle

from ..model.bundle import load_model
from ..common.native import capture_stdout
from ..runtimes.paddle import io_handles, paddle_predictor, run_paddle_inference
from . import legacy_ir
from .job import INPUT_NAME, batched, first_line, verify_threads

MODEL_NAME, PARAMS_NAME = "model.pdmodel", "model.pdiparams"


class RunFailed(RuntimeError):
    """A runtime cannot run what was written (the parent reports it as a verification failure)."""


def _logits(model_dir: Path, x: np.ndarray, batch, onednn: bool, int8: bool = False) -> np.ndarray:
    pred = paddle_predictor(model_dir / MODEL_NAME, model_dir / PARAMS_NAME, onednn=onednn, threads=verify_threads(),
                            int8=int8)
    handles = io_handles(pred)
    return batched(lambda xb: run_paddle_inference(pred, xb, handles), x, batch)


def _trace(model, prefix: Path, shape: list) -> None:
    try:
        paddle.jit.save(model, str(prefix), input_spec=[paddle.static.InputSpec(shape, "float32", INPUT_NAME)],
                        clip_extra=False)
    except TypeError as e:
        if "must be Value, but got Variable" not in str(e):
            raise
        raise RuntimeError(f"the model calls a Paddle function that Paddle 3 can no longer trace into the legacy "
                           f"format and that compress does not cover yet ({first_line(e)}); its legacy branches "
                           f"cover {', '.join(sorted(legacy_ir.LEGACY))} and F.{', F.'.join(legacy_ir.NN_LEGACY)}"
                           ) from None


def save(req: dict) -> dict:
    """Trace the model into the legacy format and run it in Paddle Inference, oneDNN off and on."""
    patched = legacy_ir.install()
    bundle = load_model(req["weights"])
    batch, out = req["batch"], Path(req["out"])
    shape = [None if batch == "dynamic" else int(batch), *bundle.input_shape]
    t0 = time.perf_counter()
    _trace(bundle.model, out / "model", shape)
    seconds = time.perf_counter() - t0
    (out / "model.pdiparams.info").unlink(missing_ok=True)   # jit.load's side file; no runtime reads it
    if not (out / MODEL_NAME).is_file():
        raise RuntimeError(f"paddle.jit.save wrote {sorted(p.name for p in out.iterdir())}, not {MODEL_NAME}")
    x = np.load(req["parity"])["x"]
    outputs = {}
    for name, onednn in (("paddle_legacy", False), ("paddle_legacy_onednn", True)):
        try:
            outputs[name] = _logits(out, x, batch, onednn=onednn)
        except Exception as e:  # noqa: BLE001 - paddle raises many types
            raise RunFailed(f"Paddle Inference (legacy mode, oneDNN {'on' if onednn else 'off'}) cannot run "
                            f"the legacy model: {type(e).__name__}: {first_line(e)}") from None
    np.savez(req["outputs"], **outputs)
    return {"files": sorted(p.name for p in out.iterdir()), "patched_ops": patched, "save_seconds": round(seconds, 2),
            "pir": bool(paddle.get_flags(["FLAGS_enable_pir_api"])["FLAGS_enable_pir_api"]), "input_shape": shape}


def _quantize(fp32: Path, out: Path, scheme: dict, x_cal: np.ndarray, batch) -> float:
    """One PaddleSlim PTQ run (static graph, legacy program); returns its seconds."""
    from paddleslim.quant import quant_post_static  # optional heavy: the [paddleslim] extra, INT8 only

    size = 8 if batch == "dynamic" else int(batch)
    n = len(x_cal) // size if batch != "dynamic" else -(-len(x_cal) // size)

    def feeds():  # feed dicts: quant_post_static's batch_generator= fails on Paddle 3, data_loader= works
        for i in range(n):
            yield {INPUT_NAME: x_cal[i * size:(i + 1) * size]}

    t0 = time.perf_counter()
    paddle.enable_static()
    try:
        quant_post_static(executor=paddle.static.Executor(paddle.CPUPlace()), model_dir=str(fp32),
                          quantize_model_path=str(out), data_loader=feeds, model_filename=MODEL_NAME,
                          params_filename=PARAMS_NAME, save_model_filename=MODEL_NAME,
                          save_params_filename=PARAMS_NAME, batch_size=size, batch_nums=n, **scheme["settings"])
    finally:
        paddle.disable_static()
    return time.perf_counter() - t0


def ptq(req: dict) -> dict:
    """PTQ with one scheme (one process per quantization: repeated PTQ runs in one process leaked memory);
    the INT8 model's logits on the test and parity images."""
    fp32, out, batch = Path(req["fp32"]), Path(req["out"]), req["batch"]
    x_cal, x_test, x_par = (np.load(req[k])["x"] for k in ("calib", "test", "parity"))
    seconds = _quantize(fp32, out, req["scheme"], x_cal, batch)
    np.savez(req["outputs"], test=_logits(out, x_test, batch, onednn=True, int8=True),
             parity=_logits(out, x_par, batch, onednn=True, int8=True))
    return {"quantize_seconds": round(seconds, 2), "files": sorted(p.name for p in out.iterdir())}


TASKS = {"save": save, "ptq": ptq}


def main(argv: list[str]) -> int:
    """Run the request in ``argv[0]``; write its answer next to it (``*.result.json``)."""
    req_path = Path(argv[0])
    req = json.loads(req_path.read_text())
    result_path = Path(req["result"])
    try:
        with capture_stdout():
            answer = {"ok": True, **TASKS[req["task"]](req)}
    except RunFailed as e:
        answer = {"ok": False, "error": str(e), "verification": True}
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises a CompressError
        answer = {"ok": False, "error": f"{type(e).__name__}: {first_line(e)}",
                  "traceback": traceback.format_exc()[-2000:]}
    result_path.write_text(json.dumps(answer, default=str))
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
