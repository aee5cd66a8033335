"""Shared fixtures: one tiny trained model per test session."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# The user's list of trusted architectures (compress.model.trust) lives in a throw-away directory for the
# whole session, never in the real ~/.config. The tests' tiny models live in tests/tiny_models.py,
# on sys.path and outside the working directory: their paddle.nn.Layer classes load from a sidecar
# with no opt-in, as any installed model zoo's do.
os.environ["COMPRESS_CONFIG_DIR"] = tempfile.mkdtemp(prefix="compress-test-config-")
os.environ.pop("COMPRESS_TRUST_ARCH", None)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A resnet_tiny trained for one epoch on the digits (weights + sidecar); returns the .pdparams path."""
    from compress.training.config import FitConfig
    from compress.workflows.train import train

    path = tmp_path_factory.mktemp("models") / "resnet_tiny.pdparams"
    train(path, arch="resnet_tiny", data="digits", config=FitConfig(epochs=1, seed=0, drop_path_rate=0.0))
    return path


@pytest.fixture(scope="session")
def trained_resnet(tmp_path_factory):
    """The shipped resnet_tiny sample (98.9 % test accuracy on digits), copied: a model whose accuracy makes
    an accuracy threshold (e.g. INT8's 1-point budget) meaningful."""
    import shutil

    from compress.workflows.sweep import sample_model

    src = sample_model("resnet_tiny")
    dst = tmp_path_factory.mktemp("sample") / src.name
    shutil.copy2(src, dst)
    shutil.copy2(src.with_name(src.stem + ".compress.json"), dst.with_name(dst.stem + ".compress.json"))
    return dst


EXPORT_SHAPE = (1, 16, 16)  # C,H,W of the models in `exports`


def _net(width):
    import paddle

    class Net(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(1, width, 3, padding=1)
            self.bn = paddle.nn.BatchNorm2D(width)
            self.fc = paddle.nn.Linear(width * 16 * 16, 10)

        def forward(self, x):
            y = paddle.nn.functional.relu(self.bn(self.conv(x)))
            return self.fc(paddle.flatten(y, 1))

    return Net()


def _export(model, d):
    import paddle

    from compress.export.onnx import _paddle2onnx  # paddle2onnx with its run-time pip installs kept off

    paddle.jit.save(model, f"{d}/paddle/model", input_spec=[paddle.static.InputSpec([None, *EXPORT_SHAPE], "float32", "x")])
    _paddle2onnx(Path(f"{d}/paddle/model.json"), Path(f"{d}/paddle/model.pdiparams"), Path(f"{d}/model.onnx"), 17)
    assert os.path.getsize(f"{d}/model.onnx") > 0


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """Two tiny exported models (different widths) and their dygraph originals."""
    import paddle

    paddle.seed(0)
    out = {}
    for name, width in (("big", 8), ("small", 2)):
        model = _net(width)
        model.eval()
        d = tmp_path_factory.mktemp(name)
        _export(model, d)
        out[name] = (d, model)
    return out
