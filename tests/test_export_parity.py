"""Parity that scales with the model: the tolerance rule on synthetic logits, its options, and a real
conversion error (one wrong weight in the exported ONNX file) refused with exit code 3."""
from __future__ import annotations

import numpy as np
import pytest

import compress.export.onnx as onnx_export
from compress.common.errors import EXIT_PARITY, CompressError
from compress.export import ExportOptions
from compress.export.parity import Tolerance, compare
from helpers import invoke, one_line_error

TOL = Tolerance()


def logits(scale: float, n: int = 64, classes: int = 1000, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, classes)) * scale).astype(np.float32)


def test_large_logits_pass_with_rounding_noise_even_where_a_logit_is_near_zero():
    ref = logits(500.0)
    ref[:, 7] = 0.01                                       # a logit near zero carries the same absolute error
    noise = np.random.default_rng(1).uniform(-4.3e-3, 4.3e-3, ref.shape).astype(np.float32)  # ResNet-50 oneDNN
    fig = compare(ref, ref + noise, TOL)
    assert fig["passed"] and fig["worst_tolerance_use"] < 0.2
    assert not np.allclose(ref + noise, ref, atol=1e-4, rtol=1e-4)   # an elementwise allclose would refuse it


def test_small_logits_keep_a_tight_absolute_tolerance():
    ref = logits(1e-3)
    assert compare(ref, ref + 5e-5, TOL)["passed"]
    fig = compare(ref, ref + 5e-4, TOL)
    assert not fig["passed"] and fig["elements_over_tolerance"] == ref.size


def test_a_one_percent_error_is_refused_at_any_scale():
    for scale in (1e-2, 1.0, 1e3):
        ref = logits(scale)
        assert not compare(ref, ref * 1.01, TOL)["passed"], scale


def test_agreements():
    ref = logits(1.0, n=100, classes=10)
    out = ref.copy()
    out[0] = -ref[0]                                       # one image ranked upside down
    fig = compare(ref, out, Tolerance(atol=1e9))          # closeness out of the way: agreements decide
    assert fig["argmax_agreement"] == 0.99 and fig["top5_agreement"] == 0.99 and fig["top_k"] == 5
    assert fig["passed"]
    assert not compare(ref, out, Tolerance(atol=1e9, min_argmax_agreement=1.0))["passed"]
    few = logits(1.0, n=10, classes=3)
    assert compare(few, few, TOL)["top_k"] == 3


def test_shape_and_non_finite_refused():
    ref = logits(1.0, classes=10)
    assert not compare(ref, ref[:, :9], TOL)["passed"]
    bad = ref.copy()
    bad[0, 0] = np.nan
    assert not compare(ref, bad, TOL)["passed"]


@pytest.mark.parametrize("kwargs, param", [({"rtol": -1}, "rtol"), ({"atol": float("nan")}, "atol"),
                                            ({"min_argmax_agreement": 1.5}, "min_argmax_agreement"),
                                            ({"min_top5_agreement": "x"}, "min_top5_agreement")])
def test_options_validate_and_name_the_parameter(kwargs, param):
    with pytest.raises(CompressError) as e:
        ExportOptions(**kwargs)
    assert e.value.param == param


def test_cli_flags_reach_the_record(tiny_model, tmp_path):
    import json

    out = tmp_path / "o"
    res = invoke("export", tiny_model, "--out", out, "--format", "onnx", "--rtol", "0.01", "--atol", "0",
                 "--min-argmax-agreement", "95", "--min-top5-agreement", "90", "--parity-images", "40", "--json")
    assert res.exit_code == 0, res.output
    par = json.loads(res.stdout)["parity"]
    assert par["tolerance"]["rtol"] == 0.01 and par["tolerance"]["atol"] == 0
    assert par["tolerance"]["min_argmax_agreement"] == 0.95 and par["tolerance"]["min_top5_agreement"] == 0.9
    assert par["n_inputs"] == 40 and par["runtimes"]["onnxruntime"]["n_inputs"] == 40
    err = one_line_error(invoke("export", tiny_model, "--out", tmp_path / "p", "--min-argmax-agreement", "120"))
    assert "--min-argmax-agreement must be between 0 and 100 %" in err


def test_a_wrong_weight_in_the_onnx_file_is_refused(trained_resnet, tmp_path, monkeypatch):
    """A real conversion error: paddle2onnx's output with one weight of the first convolution changed."""
    import onnx
    from onnx import numpy_helper

    real = onnx_export._paddle2onnx

    def tampered(model_file, params_file, save_file, opset):
        log = real(model_file, params_file, save_file, opset)
        m = onnx.load(str(save_file))
        init = next(t for t in m.graph.initializer if len(t.dims) == 4)   # the stem convolution's weight
        w = numpy_helper.to_array(init).copy()
        w.flat[0] += 0.1 * float(np.abs(w).max())
        init.CopyFrom(numpy_helper.from_array(w, init.name))
        onnx.save(m, str(save_file))
        return log

    monkeypatch.setattr(onnx_export, "_paddle2onnx", tampered)
    out = tmp_path / "o"
    res = invoke("export", trained_resnet, "--out", out)
    err = one_line_error(res, EXIT_PARITY)
    assert "onnxruntime disagrees with the source model" in err and "--atol" in err and "--rtol" in err
    assert not out.exists()
