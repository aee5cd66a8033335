"""Shared fixtures: one tiny trained model per test session."""
from __future__ import annotations

import os
import tempfile

import pytest

# The user's list of trusted architectures (compress.trust) lives in a throw-away directory for the
# whole session, never in the real ~/.config. The tests' tiny models live in tests/tiny_models.py,
# on sys.path and outside the working directory: their paddle.nn.Layer classes load from a sidecar
# with no opt-in, as any installed model zoo's do.
os.environ["COMPRESS_CONFIG_DIR"] = tempfile.mkdtemp(prefix="compress-test-config-")
os.environ.pop("COMPRESS_TRUST_ARCH", None)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A resnet_tiny trained for one epoch on the digits (weights + sidecar); returns the .pdparams path."""
    from compress.training import FitConfig, train

    path = tmp_path_factory.mktemp("models") / "resnet_tiny.pdparams"
    train(path, arch="resnet_tiny", data="digits", config=FitConfig(epochs=1, seed=0))
    return path


@pytest.fixture(scope="session")
def trained_resnet(tmp_path_factory):
    """The shipped resnet_tiny sample (98.9 % test accuracy on digits), copied: a model whose accuracy makes
    an accuracy threshold (e.g. INT8's 1-point budget) meaningful."""
    import shutil

    from compress.sweep import sample_model

    src = sample_model("resnet_tiny")
    dst = tmp_path_factory.mktemp("sample") / src.name
    shutil.copy2(src, dst)
    shutil.copy2(src.with_name(src.stem + ".compress.json"), dst.with_name(dst.stem + ".compress.json"))
    return dst
