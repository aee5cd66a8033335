"""Shared fixtures: one tiny trained model per test session."""
from __future__ import annotations

import os

import pytest

# The tests' tiny models live in tests/tiny_models.py, which their sidecars name: the user's opt-in
# (--trust-arch) is given for them, for the whole session. Tests of the refusal remove it again.
os.environ["COMPRESS_TRUST_ARCH"] = "1"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A resnet_tiny trained for one epoch on the digits (weights + sidecar); returns the .pdparams path."""
    from compress.training import FitConfig, train

    path = tmp_path_factory.mktemp("models") / "resnet_tiny.pdparams"
    train(path, arch="resnet_tiny", data="digits", config=FitConfig(epochs=1, seed=0))
    return path

