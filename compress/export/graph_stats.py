"""Graph statistics of exported files: ops and parameters per format, so that a removed
block's ops can be seen gone from every graph (``export.json``'s ``graphs``)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..runtimes.layout import INT8_FILE, ONNX_FILE, PADDLE_MODEL, paddle_ops


def paddle_graph_stats(model_json: str | Path) -> dict:
    """Ops and parameters of a PIR ``model.json`` (parameters are its ``p`` ops, with their shapes)."""
    ops = paddle_ops(model_json)
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


def _onnx_nodes(onnx, graph, nodes: list, inits: list) -> None:
    """Nodes and initializers of ``graph`` and of every subgraph (If/Loop bodies)."""
    inits.extend(graph.initializer)
    for n in graph.node:
        nodes.append(n)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _onnx_nodes(onnx, a.g, nodes, inits)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    _onnx_nodes(onnx, sg, nodes, inits)


def onnx_graph_stats(path: str | Path) -> dict:
    """Nodes (including those of subgraphs) and initializers of an ONNX file."""
    import onnx  # optional heavy: only reading ONNX graphs needs it
    from onnx import numpy_helper

    model = onnx.load(str(path))
    nodes: list = []
    inits: list = []
    _onnx_nodes(onnx, model.graph, nodes, inits)
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
