"""Real architectures at real size (slow): paddle.vision's ResNet-50 and MobileNetV2 at 224x224 (random weights)
through train --epochs 0, prune, export in every format with INT8, and report, on the default tolerances.
(`benchmarks/real_size.py` measures the same path; this proves it passes.)"""
from __future__ import annotations

import json

import pytest

from helpers import invoke

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("arch, blocks, kept", [("mobilenet_v2", 10, 5), ("resnet50", 12, 6)])
def test_prune_export_every_format_with_int8_and_report(arch, blocks, kept, tmp_path):
    base = tmp_path / f"{arch}.pdparams"
    res = invoke("train", "--arch", f"paddle.vision.models:{arch}", "--arch-kwargs", '{"num_classes": 10}',
                 "--input-shape", "3,224,224", "--epochs", 0, "--drop-path-rate", 0, "--out", base, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["blocks"] == blocks
    pruned = tmp_path / f"{arch}.keep0.5.pdparams"
    res = invoke("prune", base, "--keep", 0.5, "--criterion", "every-other", "--epochs", 0, "--out", pruned, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["plan"]["blocks_after"] == kept
    out = tmp_path / "exp"
    res = invoke("export", pruned, "--out", out, "--format", "paddle,paddle-legacy,onnx", "--int8",
                 "--int8-seconds", 2, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert set(info["parity"]["runtimes"]) == {"paddle_inference", "paddle_inference_onednn", "paddle_legacy",
                                               "paddle_legacy_onednn", "onnxruntime"}
    assert all(f["passed"] for f in info["parity"]["runtimes"].values())
    for rt in ("onnxruntime", "paddle"):
        assert info["int8"][rt]["candidates"] and all(c["error"] is None for c in info["int8"][rt]["candidates"])
    res = invoke("report", base, pruned, "--out", tmp_path / "rep", "--batch", 1, "--runs", 10, "--seconds", 0,
                 "--int8", "--int8-seconds", 2, "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    assert {"paddle", "onnxruntime"} <= {r["runtime"] for r in rows}
    assert all(r["latency_ms_p50"] > 0 for r in rows)
