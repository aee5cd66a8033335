"""The runtimes on real exported models: Paddle Inference and ONNX Runtime runners agree with
each other and with the dygraph model; the registry and its errors."""
import numpy as np
import pytest

from compress.common.errors import CompressError
from compress.runtimes import RUNTIMES, make_runner

SHAPE = (1, 16, 16)


def _dygraph(model, x):
    import paddle

    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def test_registry_names():
    assert set(RUNTIMES) == {"paddle", "paddle-legacy", "paddle-int8", "onnxruntime", "onnxruntime-int8"}
    assert {r.engine for r in RUNTIMES.values()} == {"paddle", "onnxruntime"}


@pytest.mark.parametrize("batch", [1, 5])
def test_runners_agree_with_each_other_and_dygraph(exports, batch):
    d, model = exports["big"]
    x = np.random.default_rng(1).standard_normal((batch, *SHAPE), dtype=np.float32)
    ref = _dygraph(model, x)
    outs = {
        "paddle+onednn": make_runner("paddle", d, threads=1, onednn=True),
        "paddle": make_runner("paddle", d, threads=1, onednn=False),
        "onnxruntime": make_runner("onnxruntime", d, threads=1),
    }
    results = {}
    for name, runner in outs.items():
        y = runner.run(x)
        y2 = runner.run(x[:1])  # handles are reused across shapes
        assert y.shape == (batch, 10), name
        np.testing.assert_allclose(y, ref, atol=1e-4, rtol=0, err_msg=name)
        np.testing.assert_allclose(y2, ref[:1], atol=1e-4, rtol=0, err_msg=name)
        results[name] = y
    np.testing.assert_allclose(results["paddle"], results["onnxruntime"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(results["paddle+onednn"], results["onnxruntime"], atol=1e-4, rtol=0)


def test_runners_read_input_shape_and_accept_paths(exports):
    d, _ = exports["big"]
    assert make_runner("onnxruntime", d).input_shape == SHAPE
    assert make_runner("paddle", d).input_shape == SHAPE
    # an .onnx file directly (e.g. model.int8.onnx), and the paddle/ subdirectory or model.json
    assert make_runner("onnxruntime", d / "model.onnx").path == d / "model.onnx"
    assert make_runner("paddle", d / "paddle").input_shape == SHAPE
    assert make_runner("paddle", d / "paddle" / "model.json").input_shape == SHAPE
    assert make_runner("paddle", d, threads=2, onednn=False).describe() == {
        "runtime": "paddle", "path": str(d / "paddle" / "model.json"), "threads": 2, "onednn": False}


def test_runner_errors(exports, tmp_path):
    d, _ = exports["big"]
    with pytest.raises(CompressError, match="unknown runtime"):
        make_runner("tensorrt", d)
    with pytest.raises(CompressError, match="no Paddle Inference model"):
        make_runner("paddle", tmp_path)
    with pytest.raises(CompressError, match="no such ONNX model"):
        make_runner("onnxruntime", tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(CompressError, match="empty ONNX"):
        make_runner("onnxruntime", tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(CompressError, match="ONNX Runtime cannot load"):
        make_runner("onnxruntime", tmp_path)
    with pytest.raises(CompressError, match="no option onednn"):
        make_runner("onnxruntime", d, onednn=False)
    with pytest.raises(CompressError, match="threads"):
        make_runner("onnxruntime", d, threads=0)
