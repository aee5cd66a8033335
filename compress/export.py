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

INT8
----
PaddleSlim 2.6.0 (its last release) predates Paddle 3 and its PTQ cannot save a
quantized model on Paddle 3.3.1, and ``paddle.quantization`` PTQ models fail in
``paddle.jit.save`` there; so INT8 goes through onnxruntime's maintained static
quantizer on the verified FP32 ONNX model: QDQ format, per-channel INT8 weights,
UINT8 activations, MinMax calibration on real training images.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import EXIT_ACCURACY, EXIT_PARITY, CompressError
from .fileio import _json_default, atomic_dir, sha256
from .progress import NULL, Progress

EXPORT_FORMAT = "compress-export/1"
MIN_OPSET = 11
MAX_OPSET = 21          # paddle2onnx 2.1.0 aborts the process above 21
DEFAULT_OPSET = 21      # highest opset verified with paddle2onnx 2.1.0 + onnxruntime 1.32 on both sample archs
INPUT_NAME = "x"
PARITY_IMAGES = 256     # test images pushed through every runtime
MIN_ARGMAX_AGREEMENT = 0.999
CALIB_IMAGES = 256      # training images used to calibrate INT8
# Only the weight-heavy ops are quantized. On the 8-epoch vit_tiny (digits test split, 360 images) this kept
# INT8 at 66.1 % vs FP32 65.6 % (argmax agreement 97.5 %), where quantizing every supported op (LayerNorm,
# Softmax, Add, ...) gave 65.3 % (96.9 %); resnet_tiny was unchanged either way (95.6 %).
INT8_OP_TYPES = ("Conv", "MatMul", "Gemm")
PARITY_CHUNK = 64       # batch size for verification runs (with dynamic batch; the first chunk is a single image)
PADDLE_MODEL = "paddle/model.json"
PADDLE_PARAMS = "paddle/model.pdiparams"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
WORK_DIR = ".work"      # intermediates not asked for (e.g. the Paddle pair for an ONNX-only export)


# --------------------------------------------------------------------------- small helpers
class _Captured:
    def __init__(self, f):
        self._f = f

    def text(self) -> str:
        if self._f is None:
            return ""
        try:
            self._f.flush()
            self._f.seek(0)
            return self._f.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""


@contextlib.contextmanager
def capture_stdout():
    """Capture everything written to stdout (Python and C/C++ alike) for the duration.

    paddle2onnx, polygraphy and Paddle's C++ code print chatter on file descriptor 1;
    ``--json`` output must be the only thing on stdout, and a progress bar on stderr
    should not be interleaved with it. The text is kept for error messages
    (``.text()``); with ``COMPRESS_DEBUG`` set it goes to stderr instead.
    """
    import tempfile

    if os.environ.get("COMPRESS_DEBUG"):
        target, f = 2, None
    else:
        f = tempfile.TemporaryFile()
        target = f.fileno()
    _flush_c_stdout()
    try:
        saved = os.dup(1)
    except OSError:
        saved = None
    if saved is not None:
        os.dup2(target, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr if f is None else _TextSink(f)):
            yield _Captured(f)
    finally:
        _flush_c_stdout()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
        if f is not None:
            f.close()


class _TextSink:
    """A text stream writing into a binary file (for Python-level ``print`` while capturing)."""

    def __init__(self, f):
        self._f = f

    def write(self, s):
        self._f.write(s.encode("utf-8", "replace"))
        return len(s)

    def flush(self):
        with contextlib.suppress(OSError, ValueError):
            self._f.flush()

    def isatty(self):
        return False


@contextlib.contextmanager
def _quiet_logging(level: int = 30):
    """Mute Python logging at ``level`` (WARNING) and below, e.g. onnxruntime's quantizer chatter."""
    import logging

    before = logging.root.manager.disable
    logging.disable(level)
    try:
        yield
    finally:
        logging.disable(before)


@contextlib.contextmanager
def _cwd(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _error_lines(text: str, limit: int = 3) -> str:
    lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower() and ln.strip()]
    return " | ".join(lines[-limit:])[:600]


def _flush_c_stdout() -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except Exception:  # noqa: BLE001
        pass


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:400]
    return type(e).__name__


def parse_batch(value) -> str | int:
    """``"dynamic"`` / ``None`` -> ``"dynamic"``; a positive integer (or its text) -> int."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "dynamic"):
        return "dynamic"
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise CompressError(f"--batch must be 'dynamic' or a positive integer, got {value!r}") from None
    if n < 1 or str(n) != str(value).strip():
        raise CompressError(f"--batch must be 'dynamic' or a positive integer, got {value!r}")
    return n


def check_opset(opset: int) -> int:
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise CompressError(f"--opset {opset} is not supported: use {MIN_OPSET}..{MAX_OPSET} "
                            f"(paddle2onnx 2.1.0 converts up to {MAX_OPSET}; default {DEFAULT_OPSET})")
    return int(opset)


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


def _batched(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: str | int) -> np.ndarray:
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


def _versions() -> dict:
    import onnx
    import onnxruntime
    import paddle
    import paddle2onnx

    from . import __version__

    return {"compress": __version__, "python": sys.version.split()[0], "paddlepaddle": paddle.__version__,
            "paddle2onnx": paddle2onnx.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}


# --------------------------------------------------------------------------- runtimes
def run_dygraph(model, x: np.ndarray) -> np.ndarray:
    import paddle

    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(x))
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out.numpy()


def paddle_predictor(model_file: str | Path, params_file: str | Path, onednn: bool, threads: int = 1):
    """A Paddle Inference predictor on CPU, oneDNN on or off."""
    import paddle.inference as pi

    cfg = pi.Config(str(model_file), str(params_file))
    cfg.disable_gpu()
    if onednn:
        cfg.enable_mkldnn()
    else:
        cfg.disable_mkldnn()
    cfg.set_cpu_math_library_num_threads(threads)
    cfg.switch_ir_optim(True)
    cfg.disable_glog_info()
    return pi.create_predictor(cfg)


def run_paddle_inference(predictor, x: np.ndarray) -> np.ndarray:
    h = predictor.get_input_handle(predictor.get_input_names()[0])
    h.reshape(list(x.shape))
    h.copy_from_cpu(np.ascontiguousarray(x))
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def onnx_session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_onnx(session, x: np.ndarray) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x)})[0]


# --------------------------------------------------------------------------- graph statistics
def _paddle_ops(node, ops: list) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("ops"), list):
            for op in node["ops"]:
                ops.append(op)
                for region in op.get("regions", []) or []:
                    _paddle_ops(region, ops)
        for block in node.get("blocks", []) or []:
            _paddle_ops(block, ops)
        for region in node.get("regions", []) or []:
            _paddle_ops(region, ops)


def paddle_graph_stats(model_json: str | Path) -> dict:
    """Ops and parameters of a PIR ``model.json`` (parameters are its ``p`` ops, with their shapes)."""
    data = json.loads(Path(model_json).read_text())
    ops: list = []
    _paddle_ops(data.get("program", {}), ops)
    params = [op for op in ops if op.get("#") == "p"]
    compute = [op for op in ops if op.get("#") not in ("p", "1.data", "1.fetch")]
    elements = 0
    for p in params:
        try:
            elements += int(np.prod(p["O"]["TT"]["D"][1]))
        except (KeyError, IndexError, TypeError, ValueError):
            pass
    types = Counter(str(op.get("#", "?")).split(".", 1)[-1] for op in compute)
    return {"ops": len(compute), "op_types": dict(sorted(types.items())), "params": len(params),
            "param_elements": elements}


def onnx_graph_stats(path: str | Path) -> dict:
    """Nodes (including those of subgraphs) and initializers of an ONNX file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    nodes: list = []
    inits: list = []

    def walk(g):
        inits.extend(g.initializer)
        for n in g.node:
            nodes.append(n)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        walk(sg)

    walk(model.graph)
    const_elems = 0
    for n in nodes:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    const_elems += int(np.prod(list(a.t.dims))) if a.t.dims else 1
    types = Counter(n.op_type for n in nodes)
    return {
        "ops": len(nodes),
        "op_types": dict(sorted(types.items())),
        "params": len(inits),
        "param_elements": int(sum(int(np.prod(list(t.dims))) if t.dims else 1 for t in inits)),
        "param_bytes": int(sum(numpy_helper.to_array(t).nbytes for t in inits)),
        "constant_elements": const_elems,
        "opset": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "ir_version": int(model.ir_version),
    }


def graph_stats(out_dir: str | Path) -> dict:
    """Op and parameter counts of every exported graph in ``out_dir`` (keys: paddle, onnx, int8)."""
    out_dir = Path(out_dir)
    stats = {}
    if (out_dir / PADDLE_MODEL).is_file():
        stats["paddle"] = paddle_graph_stats(out_dir / PADDLE_MODEL)
    if (out_dir / ONNX_FILE).is_file():
        stats["onnx"] = onnx_graph_stats(out_dir / ONNX_FILE)
    if (out_dir / INT8_FILE).is_file():
        stats["int8"] = onnx_graph_stats(out_dir / INT8_FILE)
    return stats


# --------------------------------------------------------------------------- the export context
@dataclass
class ExportJob:
    """Everything the exporters share while building one export in ``tmp``."""

    bundle: Any
    tmp: Path
    formats: list
    opset: int
    batch: str | int
    atol: float
    max_acc_drop: float
    calib_data: str | None
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
        fig = compare(self.ref, out)
        fig["passed"] = bool(fig["max_abs_diff"] <= self.atol and fig["argmax_agreement"] >= MIN_ARGMAX_AGREEMENT)
        self.record.setdefault("parity", {}).setdefault("runtimes", {})[runtime] = fig
        self.progress.log(f"parity {runtime}: max abs diff {fig['max_abs_diff']:.2e}, "
                          f"argmax agreement {fig['argmax_agreement'] * 100:.2f}% on {fig['n_inputs']} images")
        if not fig["passed"]:
            raise CompressError(
                f"{runtime} disagrees with the source model on {fig['n_inputs']} test images: max abs diff "
                f"{fig['max_abs_diff']:.3g} (allowed {self.atol:g}), same argmax on "
                f"{fig['argmax_agreement'] * 100:.2f}% (needed {MIN_ARGMAX_AGREEMENT * 100:.1f}%); nothing written",
                EXIT_PARITY)
        return fig


# --------------------------------------------------------------------------- exporters
def export_paddle(job: ExportJob, keep: bool) -> None:
    """``paddle.jit.save`` with an InputSpec named ``x``; verified in Paddle Inference, oneDNN off and on."""
    import paddle

    model_file = job.path(PADDLE_MODEL, keep)
    prefix = model_file.with_suffix("")
    shape = [None if job.batch == "dynamic" else int(job.batch), *job.input_shape]
    spec = [paddle.static.InputSpec(list(shape), "float32", name=INPUT_NAME)]
    try:
        # jit.save traces a static copy of forward (AST translation, full graph); the dygraph model is untouched
        paddle.jit.save(job.bundle.model, str(prefix), input_spec=spec)
    except Exception as e:  # noqa: BLE001 - paddle raises many types while tracing
        raise CompressError(f"paddle.jit.save could not convert the model to a static graph: "
                            f"{type(e).__name__}: {_first_line(e)}") from None
    params_file = prefix.with_suffix(".pdiparams")
    if not model_file.is_file() or not params_file.is_file():
        found = sorted(p.name for p in model_file.parent.iterdir())
        raise CompressError(f"paddle.jit.save did not write model.json + model.pdiparams (found {found}); "
                            "is FLAGS_enable_pir_api set to 0?")
    job.record["input"]["shape"] = shape
    if not keep:
        return
    for onednn in (False, True):
        name = "paddle_inference_onednn" if onednn else "paddle_inference"
        try:
            pred = paddle_predictor(model_file, params_file, onednn=onednn, threads=1)
            job.record["output"]["names"]["paddle"] = pred.get_output_names()[0]
            out = _batched(lambda xb: run_paddle_inference(pred, xb), job.x_parity, job.batch)
        except Exception as e:  # noqa: BLE001
            hint = (" (a known Paddle 3.3.x oneDNN issue; see README: pin paddlepaddle 3.2.2 or export ONNX only)"
                    if onednn else "")
            raise CompressError(f"Paddle Inference ({'oneDNN' if onednn else 'no oneDNN'}) cannot run the exported "
                                f"model: {type(e).__name__}: {_first_line(e)}{hint}; nothing written", EXIT_PARITY) from None
        job.check_parity(name, out)
        job.progress.log(f"Paddle Inference {'with' if onednn else 'without'} oneDNN verified")


def _paddle2onnx(model_file: Path, params_file: Path, save_file: Path, opset: int) -> str:
    """Run paddle2onnx; return what it printed (it reports most failures only there)."""
    import paddle2onnx

    # paddle2onnx 2.1.0 sets os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] = "1" itself just before its polygraphy
    # constant folding, which would let polygraphy pip-install packages at run time. polygraphy reads the
    # variable once, at import: import it first (with our "0") and pin its flag off; restore the variable after.
    try:
        import polygraphy.config

        polygraphy.config.AUTOINSTALL_DEPS = False
    except ImportError:  # paddle2onnx then skips folding with a warning
        pass
    before = os.environ.get("POLYGRAPHY_AUTOINSTALL_DEPS")
    try:
        with capture_stdout() as cap:
            try:
                paddle2onnx.export(str(model_file), str(params_file), save_file=str(save_file), opset_version=opset,
                                   auto_upgrade_opset=True, enable_onnx_checker=True, enable_optimize=True,
                                   verbose=False)
            except Exception as e:  # noqa: BLE001
                log = _error_lines(cap.text())
                raise CompressError(f"paddle2onnx failed: {type(e).__name__}: {_first_line(e)}"
                                    f"{' (' + log + ')' if log else ''}; nothing written") from None
            return cap.text()
    finally:
        if before is None:
            os.environ.pop("POLYGRAPHY_AUTOINSTALL_DEPS", None)
        else:
            os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] = before


def export_onnx(job: ExportJob, keep: bool) -> None:
    """paddle2onnx from the Paddle pair; checked (file, onnx.checker, onnxruntime) and verified."""
    import onnx

    model_file = job.path(PADDLE_MODEL, "paddle" in job.formats)
    params_file = model_file.with_suffix(".pdiparams")
    save_file = job.path(ONNX_FILE, keep)
    log = _paddle2onnx(model_file, params_file, save_file, job.opset)
    if not save_file.is_file() or save_file.stat().st_size == 0:
        errors = _error_lines(log)
        raise CompressError(f"paddle2onnx wrote no ONNX model{' (' + errors + ')' if errors else ''}; nothing written")
    try:
        onnx.checker.check_model(str(save_file), full_check=True)
    except Exception as e:  # noqa: BLE001
        raise CompressError(f"paddle2onnx wrote an invalid ONNX model: {_first_line(e)}; nothing written") from None
    try:
        session = onnx_session(save_file)
    except Exception as e:  # noqa: BLE001
        raise CompressError(f"onnxruntime cannot load the exported model: {_first_line(e)}; nothing written") from None
    model = onnx.load(str(save_file), load_external_data=False)
    actual = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=job.opset)
    if actual != job.opset:
        job.progress.log(f"paddle2onnx raised the opset from {job.opset} to {actual} (the model needs it)")
    job.record["opset"] = int(actual)
    job.record.setdefault("input", {})["onnx_shape"] = [d if isinstance(d, int) else None
                                                       for d in session.get_inputs()[0].shape]
    job.record["output"]["names"]["onnx"] = session.get_outputs()[0].name
    # verified even when only an intermediate (for INT8): the quantized model is built from it
    out = _batched(lambda xb: run_onnx(session, xb), job.x_parity, job.batch)
    job.check_parity("onnxruntime", out)
    job.progress.log("ONNX Runtime verified")


class _CalibrationReader:
    """onnxruntime CalibrationDataReader over real images, in the export's batch size."""

    def __init__(self, x: np.ndarray, batch: str | int, input_name: str):
        size = 32 if batch == "dynamic" else int(batch)
        self._batches = []
        for i in range(0, len(x), size):
            xb = x[i:i + size]
            if batch != "dynamic" and len(xb) < size:
                continue  # a fixed-batch model takes only full batches
            self._batches.append({input_name: np.ascontiguousarray(xb)})
        self._it = iter(self._batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._batches)

    def __len__(self):
        return len(self._batches)


def export_int8(job: ExportJob, keep: bool) -> None:
    """onnxruntime static quantization (QDQ, per-channel) calibrated on real images; accuracy-gated."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .data import load_data

    fp32 = job.path(ONNX_FILE, "onnx" in job.formats)
    out = job.path(INT8_FILE, keep)
    calib_source = job.calib_data or job.data.source
    cdata = job.data if calib_source == job.data.source else load_data(calib_source, job.input_shape)
    rng = np.random.default_rng(0)
    pool = cdata.x_train if len(cdata.x_train) else cdata.x_test
    n = min(CALIB_IMAGES, len(pool))
    if job.batch != "dynamic":
        n = (n // int(job.batch)) * int(job.batch) or min(int(job.batch), len(pool))
    if n == 0 or (job.batch != "dynamic" and n < int(job.batch)):
        raise CompressError(f"calibration data {calib_source!r} has too few images ({len(pool)}) for INT8")
    x_cal = pool[np.sort(rng.choice(len(pool), size=n, replace=False))]
    fp32, out = fp32.resolve(), out.resolve()
    pre = (job.tmp / WORK_DIR / "model.pre.onnx").resolve()
    pre.parent.mkdir(parents=True, exist_ok=True)
    # Shape inference + graph optimisation (e.g. Conv+BN folding) before quantizing. Symbolic shape
    # inference fails on the ViT's dynamic reshapes ("Incomplete symbolic shape inference"); ONNX's own
    # shape inference is enough there. If both fail, quantize the model as converted.
    # (onnxruntime's symbolic shape inference saves "sym_shape_infer_temp.onnx" and an external-data file
    # into the current directory when it fails: run it from the scratch directory.)
    preprocessed = None
    for mode, skip_symbolic in (("symbolic", False), ("onnx", True)):
        try:
            with capture_stdout(), _quiet_logging(), _cwd(pre.parent):
                quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=skip_symbolic)
            preprocessed = mode
            break
        except Exception as e:  # noqa: BLE001 - pre-processing only helps
            job.progress.log(f"quant_pre_process ({mode} shape inference) failed: {type(e).__name__}: {_first_line(e)}")
    source_model = pre if preprocessed else fp32
    settings = {"format": "QDQ", "op_types": list(INT8_OP_TYPES), "per_channel": True, "weight_type": "QInt8",
                "activation_type": "QUInt8", "reduce_range": False, "calibrate_method": "MinMax",
                "pre_process": preprocessed}
    try:
        with capture_stdout(), _quiet_logging(), _cwd(pre.parent):
            quantize_static(str(source_model), str(out), _CalibrationReader(x_cal, job.batch, INPUT_NAME),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(INT8_OP_TYPES),
                            per_channel=True, reduce_range=False, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    except Exception as e:  # noqa: BLE001
        raise CompressError(f"INT8 quantization failed: {type(e).__name__}: {_first_line(e)}; nothing written") from None
    if not out.is_file() or out.stat().st_size == 0:
        raise CompressError("INT8 quantization wrote no model; nothing written")
    try:
        s8, s32 = onnx_session(out), onnx_session(fp32)
    except Exception as e:  # noqa: BLE001
        raise CompressError(f"onnxruntime cannot load the INT8 model: {_first_line(e)}; nothing written") from None
    x_te, y_te = job.data.x_test, job.data.y_test
    if len(y_te) == 0:
        raise CompressError(f"data {job.data.source!r} has no test images to measure INT8 accuracy on")
    l32 = _batched(lambda xb: run_onnx(s32, xb), x_te, job.batch)
    l8 = _batched(lambda xb: run_onnx(s8, xb), x_te, job.batch)
    acc32, acc8 = float((l32.argmax(1) == y_te).mean()), float((l8.argmax(1) == y_te).mean())
    drop = acc32 - acc8
    job.record["int8"] = {
        "calibration": {"source": calib_source, "split": "train", "images": int(n), **settings},
        "test_images": int(len(y_te)), "fp32_accuracy": acc32, "int8_accuracy": acc8, "accuracy_drop": drop,
        "max_accuracy_drop": job.max_acc_drop, "argmax_agreement_vs_fp32": float((l8.argmax(1) == l32.argmax(1)).mean()),
        "max_abs_diff_vs_fp32": float(np.abs(l8 - l32).max()), "passed": bool(drop <= job.max_acc_drop + 1e-12),
    }
    job.progress.log(f"INT8 accuracy {acc8 * 100:.2f}% vs FP32 {acc32 * 100:.2f}% on {len(y_te)} test images")
    if drop > job.max_acc_drop + 1e-12:
        raise CompressError(f"INT8 model loses {drop * 100:.2f} accuracy points on {len(y_te)} test images "
                            f"({acc32 * 100:.2f}% -> {acc8 * 100:.2f}%; allowed {job.max_acc_drop * 100:.2f}); "
                            "nothing written (raise --max-acc-drop or export without --int8)", EXIT_ACCURACY)


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
    if isinstance(formats, str):
        formats = [f for f in formats.replace(" ", "").split(",") if f]
    formats = list(dict.fromkeys(list(formats or ()) + (["int8"] if int8 else [])))
    bad = [f for f in formats if f not in EXPORTERS]
    if bad:
        raise CompressError(f"unknown export format {bad[0]!r}: use {', '.join(EXPORTERS)} (comma-separated)")
    if not formats:
        raise CompressError(f"no export format given: use {', '.join(EXPORTERS)}")
    return [f for f in EXPORTERS if f in formats]  # canonical order


def _needed(formats: list[str]) -> list[str]:
    need = set(formats)
    for name in reversed(list(EXPORTERS)):
        if name in need:
            need.update(EXPORTERS[name].requires)
    return [f for f in EXPORTERS if f in need]


def check_out_dir(out_dir: Path, force: bool, model_path: Path | None, flag: str = "--out") -> None:
    """Refuse an output directory that cannot or must not be (re)written, before any work is done."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CompressError(f"{flag} {out_dir} exists and is not a directory")
    parent = out_dir.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CompressError(f"{flag} {out_dir}: cannot create it, {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CompressError(f"{flag} {out_dir}: cannot create it, {parent} is not writable")
    if model_path is not None:
        with contextlib.suppress(OSError):
            if out_dir.resolve() == model_path.resolve().parent or out_dir.resolve() in model_path.resolve().parents:
                raise CompressError(f"{flag} {out_dir} holds the source model; choose a new directory")
    if out_dir.is_dir():
        try:
            entries = list(out_dir.iterdir())
        except OSError as e:
            raise CompressError(f"{flag} {out_dir}: cannot read it ({e.strerror})") from None
        if entries and not force:
            raise CompressError(f"{flag} {out_dir} exists and is not empty; choose a new directory or pass --force "
                                "to replace a previous export")
        if entries and not (out_dir / "export.json").is_file():
            raise CompressError(f"{flag} {out_dir} is not empty and is not a previous export (no export.json); "
                                "refusing to replace it even with --force")


def _file_table(root: Path) -> dict:
    files = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(WORK_DIR + "/") and rel != "export.json":
            files[rel] = {"bytes": p.stat().st_size, "sha256": sha256(p)}
    return files


def export_model(model_path, out_dir, formats=DEFAULT_FORMATS, opset: int = DEFAULT_OPSET,
                 batch: str | int = "dynamic", int8: bool = False, calib_data: str | None = None,
                 max_acc_drop: float = 0.01, atol: float = 1e-4, force: bool = False,
                 progress: Progress = NULL) -> dict:
    """Export a compress model for edge devices; verify every file; return the ``export.json`` content.

    ``model_path`` is a ``.pdparams``/``.safetensors`` written by compress (with its sidecar),
    or an already loaded :class:`compress.loading.ModelBundle`. ``formats`` are keys of
    :data:`EXPORTERS`; ``int8=True`` adds ``"int8"``. ``max_acc_drop`` is a fraction
    (0.01 = one accuracy point). Raises :class:`CompressError` (exit code 3 on a parity
    failure, 4 when INT8 loses too much accuracy); on any failure ``out_dir`` is left as it was.
    """
    from .data import load_data
    from .loading import ModelBundle, load_model

    t_start = time.perf_counter()
    formats = parse_formats(formats, int8)
    opset = check_opset(opset)
    batch = parse_batch(batch)
    try:
        atol, max_acc_drop = float(atol), float(max_acc_drop)
    except (TypeError, ValueError):
        raise CompressError(f"--atol and --max-acc-drop must be numbers, got {atol!r} and {max_acc_drop!r}") from None
    if not (atol >= 0 and math.isfinite(atol)):
        raise CompressError(f"--atol must be a non-negative number, got {atol:g}")
    if not 0 <= max_acc_drop <= 1:
        raise CompressError(f"--max-acc-drop must be between 0 and 100 points, got {max_acc_drop * 100:g}")
    if calib_data is not None:
        if "int8" not in formats:
            raise CompressError("--calib-data is for --int8 (calibration images); add --int8 or leave it out")
        from .data import source_kind

        try:
            source_kind(str(calib_data))
        except CompressError as e:
            raise CompressError(f"--calib-data: {e}") from None
        calib_data = str(calib_data)
    out_dir = Path(out_dir)
    src_path = None if isinstance(model_path, ModelBundle) else Path(model_path)
    check_out_dir(out_dir, force, src_path if src_path is not None else None)

    progress.log(f"loading {model_path if src_path is not None else 'model'}")
    bundle = model_path if isinstance(model_path, ModelBundle) else load_model(model_path)
    sidecar = bundle.sidecar
    source = (sidecar.get("data") or {}).get("source")
    if not source:
        raise CompressError("the sidecar names no data source: real test images are needed to verify the export")
    try:
        data = load_data(source, bundle.input_shape)
    except CompressError as e:
        raise CompressError(f"cannot load the model's data ({source!r}, named in its sidecar) to verify the export "
                            f"on: {e}") from None
    x_parity = data.x_test[:PARITY_IMAGES]
    if len(x_parity) == 0:
        raise CompressError(f"data {source!r} has no test images to verify the export with")
    needed = _needed(formats)
    steps = len(needed) + 2
    record: dict = {
        "format": EXPORT_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": {"path": str(src_path) if src_path else (str(bundle.path) + " (modified in memory)" if bundle.path else None),
                   "sha256": sha256(src_path) if src_path else None,
                   "sidecar_sha256": None, "arch": sidecar.get("arch"),
                   "removed_blocks": list(sidecar.get("removed_blocks") or []),
                   "num_classes": bundle.num_classes},
        "versions": _versions(),
        "formats": formats,
        "opset": None,
        "opset_requested": opset,
        "batch": batch,
        "input": {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW",
                  "shape": [None if batch == "dynamic" else batch, *bundle.input_shape],
                  "preprocess": sidecar.get("preprocess")},
        "output": {"shape": [None if batch == "dynamic" else batch, bundle.num_classes], "names": {}},
        "labels": sidecar.get("class_names"),
        "parity": None,
        "int8": None,
        "files": None,
        "graphs": None,
        "seconds": None,
    }
    if src_path is not None:
        from .loading import sidecar_path

        sc = sidecar_path(src_path)
        record["source"]["sidecar_sha256"] = sha256(sc) if sc.is_file() else None
    try:
        with progress.task("exporting", steps) as advance, atomic_dir(out_dir) as tmp, capture_stdout():
            tmp = tmp.resolve()
            ref = _batched(lambda xb: run_dygraph(bundle.model, xb), x_parity, "dynamic")
            advance(1, step="reference")
            job = ExportJob(bundle=bundle, tmp=tmp, formats=formats, opset=opset, batch=batch, atol=float(atol),
                            max_acc_drop=float(max_acc_drop), calib_data=calib_data, progress=progress,
                            x_parity=x_parity, ref=ref, data=data, record=record)
            record["parity"] = {"data": f"{source} test split", "n_inputs": int(len(x_parity)), "atol": float(atol),
                                "min_argmax_agreement": MIN_ARGMAX_AGREEMENT, "reference": "paddle dygraph",
                                "runtimes": {}}
            seconds = {}
            for name in needed:
                t0 = time.perf_counter()
                progress.log(f"building {name}")
                EXPORTERS[name].build(job, name in formats)
                seconds[name] = round(time.perf_counter() - t0, 3)
                advance(1, step=name)
            if "onnx" not in needed:
                record.pop("opset")
                record.pop("opset_requested")
            if "int8" not in needed:
                record.pop("int8")
            shutil.rmtree(tmp / WORK_DIR, ignore_errors=True)
            record["files"] = _file_table(tmp)
            record["graphs"] = graph_stats(tmp)
            record["seconds"] = {**seconds, "total": round(time.perf_counter() - t_start, 3)}
            (tmp / "export.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
            advance(1, step="export.json")
    except OSError as e:
        where = e.filename or out_dir
        raise CompressError(f"cannot write the export to {out_dir}: {e.strerror or e} ({where}); nothing written") from None
    progress.log(f"wrote {out_dir}")
    return record
