"""The legacy Paddle format: ``paddle-legacy/model.pdmodel`` + ``model.pdiparams``, the format Paddle
Lite's ``opt`` and older deployment tools read (they cannot read the PIR ``model.json``:
Paddle-Lite issue 10666).

Paddle 3.3.1 writes it only with ``FLAGS_enable_pir_api=0``, a flag read once when paddle is
imported, so it is written in a subprocess of its own (:mod:`.legacy_worker`), which also runs it in
Paddle Inference in legacy mode, oneDNN off and on; the logits come back here and must pass the
same parity rule as every other format (:mod:`.parity`). ViTs trace only with
:mod:`.legacy_ir`'s legacy branches for the ops Paddle 3 binds to its C++ core.

For Paddle Lite, on a machine with a Python that has Paddle Lite wheels (see the README)::

    paddle_lite_opt --model_file=DIR/paddle-legacy/model.pdmodel --param_file=DIR/paddle-legacy/model.pdiparams \\
        --valid_targets=arm --optimize_out_type=naive_buffer --optimize_out=model
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..common.errors import EXIT_PARITY, EXIT_USAGE, CompressError
from ..model.bundle import save_model
from ..runtimes.layout import LEGACY_MODEL, WORK_DIR
from ..model.trust import TRUST_ENV
from .job import ExportJob, error_lines

WORKER = "compress.export.legacy_worker"
PIR_FLAG = "FLAGS_enable_pir_api"
TIMEOUT = 3600   # seconds a worker may take (PTQ of a large model on a slow CPU included)
LITE_COMMAND = ("paddle_lite_opt --model_file={d}/model.pdmodel --param_file={d}/model.pdiparams "
                "--valid_targets=arm --optimize_out_type=naive_buffer --optimize_out=model")


def worker_env() -> dict:
    """The worker's environment: legacy mode, the parent's import path (the model's code is found where the
    parent found it), and trust in the architecture, which the parent has already checked and built."""
    path = [p for p in sys.path if p]
    return {**os.environ, PIR_FLAG: "0", "PYTHONPATH": os.pathsep.join(path), TRUST_ENV: "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def run_worker(job: ExportJob, task: str, request: dict, what: str) -> dict:
    """Run one task in the legacy-mode subprocess; its answer, or a CompressError saying why it failed."""
    work = (job.tmp / WORK_DIR).resolve()
    work.mkdir(parents=True, exist_ok=True)
    req_path, result_path = work / f"legacy_{task}.json", work / f"legacy_{task}.result.json"
    req_path.write_text(json.dumps({"task": task, **request, "result": str(result_path)}, default=str))
    try:
        proc = subprocess.run([sys.executable, "-m", WORKER, str(req_path)], env=worker_env(), capture_output=True,
                              text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CompressError(f"{what}: the legacy-mode subprocess took more than {TIMEOUT} s; nothing written") from None
    answer = json.loads(result_path.read_text()) if result_path.is_file() else None
    if answer is None or not answer.get("ok"):
        tail = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()][-1:]
        why = ((answer or {}).get("error") or error_lines(proc.stderr + proc.stdout)
               or f"exit code {proc.returncode}{': ' + tail[0][:300] if tail else ''}")
        code = EXIT_PARITY if (answer or {}).get("verification") else EXIT_USAGE
        raise CompressError(f"{what} failed in the legacy-mode subprocess ({PIR_FLAG}=0): {why}; nothing written",
                            code)
    return answer


def source_weights(job: ExportJob) -> Path:
    """The source model's weights and sidecar in the scratch area, for the worker to rebuild it from
    (also a model that only exists in memory, e.g. just pruned)."""
    path = (job.tmp / WORK_DIR / "source" / "model.pdparams").resolve()
    if not path.is_file():
        save_model(job.bundle.model, path, job.bundle.sidecar)
    return path


def export_paddle_legacy(job: ExportJob, keep: bool) -> None:
    """``paddle-legacy/model.pdmodel`` + ``model.pdiparams``, written and run in legacy mode, verified here."""
    model_file = job.path(LEGACY_MODEL, keep).resolve()
    work = (job.tmp / WORK_DIR).resolve()
    work.mkdir(parents=True, exist_ok=True)
    np.savez(work / "parity.npz", x=job.x_parity)
    answer = run_worker(job, "save", {"weights": source_weights(job), "out": model_file.parent,
                                      "batch": job.options.batch, "parity": work / "parity.npz",
                                      "outputs": work / "legacy_outputs.npz"}, "writing the legacy Paddle format")
    outputs = np.load(work / "legacy_outputs.npz")
    for name in ("paddle_legacy", "paddle_legacy_onednn"):
        job.check_parity(name, outputs[name])
    rel = Path(LEGACY_MODEL).parent.as_posix()
    job.record.paddle_legacy = {"written_with": f"{PIR_FLAG}=0 (a subprocess)", "clip_extra": False,
                                "legacy_ops_patched": answer["patched_ops"], "input_shape": answer["input_shape"],
                                "paddle_lite_opt": LITE_COMMAND.format(d=rel) if keep else None}
    job.progress.log("legacy Paddle format verified in Paddle Inference (legacy mode, oneDNN off and on)")
