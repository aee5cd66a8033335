"""The layout of an export directory, and reading what its model files say about themselves.

``compress export`` writes (and ``compress report`` reads)::

    DIR/paddle/model.json, model.pdiparams           Paddle Inference (PIR format)
    DIR/paddle-legacy/model.pdmodel, model.pdiparams  the legacy format (Paddle Lite's opt, older tools)
    DIR/paddle-int8/model.pdmodel, model.pdiparams    INT8 by PaddleSlim, legacy format
    DIR/model.onnx                                    ONNX
    DIR/model.int8.onnx                               INT8 ONNX (ONNX Runtime)
    DIR/export.json                                   what was exported and verified
    DIR/.work/                                        scratch while exporting; never in a finished export
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..common.errors import CompressError

PADDLE_DIR = "paddle"
PADDLE_MODEL = f"{PADDLE_DIR}/model.json"
PADDLE_PARAMS = f"{PADDLE_DIR}/model.pdiparams"
LEGACY_DIR = "paddle-legacy"
LEGACY_MODEL = f"{LEGACY_DIR}/model.pdmodel"
LEGACY_PARAMS = f"{LEGACY_DIR}/model.pdiparams"
PADDLE_INT8_DIR = "paddle-int8"
PADDLE_INT8_MODEL = f"{PADDLE_INT8_DIR}/model.pdmodel"
PADDLE_INT8_PARAMS = f"{PADDLE_INT8_DIR}/model.pdiparams"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
EXPORT_JSON = "export.json"
WORK_DIR = ".work"      # intermediates not asked for (e.g. the Paddle pair for an ONNX-only export)


def paddle_files(export: Path, rel: str = PADDLE_MODEL) -> tuple[Path, Path]:
    """(model file, model.pdiparams) of the Paddle model at ``rel`` in an export (default: the PIR
    ``paddle/model.json``): accept the export dir, the model's own subdir or the model file itself."""
    export, name = Path(export), Path(rel).name
    if export.is_file() and export.suffix == Path(rel).suffix:
        model = export
    elif (export / rel).is_file():
        model = export / rel
    else:
        model = export / name
    params = model.with_suffix(".pdiparams")
    if not model.is_file() or not params.is_file():
        raise CompressError(f"{export}: no Paddle Inference model here (expected {rel} and "
                            f"{Path(rel).with_suffix('.pdiparams').as_posix()}; run compress export first)")
    return model, params


def onnx_file(export: Path, name: str = ONNX_FILE) -> Path:
    """Accept an ``.onnx`` file, or the export dir (``name`` inside it, default model.onnx)."""
    export = Path(export)
    path = export if export.suffix == ".onnx" else export / name
    if not path.is_file():
        raise CompressError(f"{path}: no such ONNX model (run compress export first)")
    if path.stat().st_size == 0:
        raise CompressError(f"{path}: empty ONNX file (the export failed)")
    return path


# --------------------------------------------------------------------------- Paddle's model.json
def _walk_ops(node, ops: list) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("ops"), list):
            for op in node["ops"]:
                ops.append(op)
                for region in op.get("regions", []) or []:
                    _walk_ops(region, ops)
        for block in node.get("blocks", []) or []:
            _walk_ops(block, ops)
        for region in node.get("regions", []) or []:
            _walk_ops(region, ops)


def paddle_ops(model_json: str | Path) -> list[dict]:
    """Every op of a PIR ``model.json`` (program -> regions -> blocks -> ops, nested regions included), in order.

    An op is a dict: ``"#"`` its type (e.g. ``"1.data"``, ``"p"`` for a parameter), ``"A"`` its attributes,
    ``"O"`` its outputs.
    """
    data = json.loads(Path(model_json).read_text())
    ops: list = []
    _walk_ops(data.get("program", {}), ops)
    return ops


def static_chw(dims) -> tuple[int, ...] | None:
    """[batch, C, H, W] with dynamic batch -> (C, H, W); None if any other dim is unknown."""
    if dims is None or len(dims) < 2:
        return None
    rest = dims[1:]
    if all(isinstance(d, (int, np.integer)) and int(d) > 0 for d in rest):
        return tuple(int(d) for d in rest)
    return None


def paddle_input_shape(model_json: Path) -> tuple[int, ...] | None:
    """Best effort: the ``shape`` attribute of the first ``data`` op of a PIR ``model.json``."""
    try:
        ops = paddle_ops(model_json)
    except (OSError, ValueError):
        return None
    for op in ops:
        if str(op.get("#", "")).endswith(".data"):
            for attr in op.get("A") or []:
                if isinstance(attr, dict) and attr.get("N") == "shape":
                    return static_chw((attr.get("AT") or {}).get("D"))
    return None


def onnx_input_shape(path: Path) -> tuple[int, ...] | None:
    """Best effort: (C, H, W) of an ONNX model's image input, read without loading weights."""
    try:
        import onnx  # optional heavy: only needed to read an ONNX file's input

        model = onnx.load(str(path), load_external_data=False)
        inits = {i.name for i in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in inits]
        if not inputs:
            return None
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
        return static_chw(dims)
    except Exception:  # noqa: BLE001 - a hint only; callers fall back to an explicit shape
        return None
