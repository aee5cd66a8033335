"""benchmarks/pipelines.py and its third-party architectures: the models' blocks are found as a user's
would be, the grid runs through the library, resumes from its JSON without redoing anything, and the
target line reads the figures it is given."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import paddle
import pytest

from compress.graph.blocks import find_blocks

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_third_party_blocks():
    tp = _load("third_party")
    paddle.seed(0)
    cnn = find_blocks(tp.SmallResNet(), (1, 16, 16))
    assert [b.path for b in cnn] == ["layers.0.0", "layers.0.1", "layers.0.2", "layers.1.1", "layers.1.2",
                                     "layers.2.1", "layers.2.2"]   # the projection blocks are not removable
    assert all(not b.own_droppath for b in cnn)
    vit = find_blocks(tp.TimmViT(), (1, 16, 16))
    assert [b.path for b in vit] == [f"blocks.{i}" for i in range(8)]
    assert all(sorted(b.own_droppath) == ["drop_path1", "drop_path2"] for b in vit)


def test_target_line():
    pl = _load("pipelines")
    cell = {"default": {0: 95.0, 1: 96.0, 2: 97.0}, "LayerDrop": {0: 93.0, 1: 94.0, 2: 95.0},
            "last-k": {0: 50.0, 1: 60.0, 2: 55.0}}
    assert pl._target(cell).startswith("**met**: default +2.00 pt vs LayerDrop")
    cell["LayerDrop"][2] = 97.5   # mean gap 1.50 but behind on seed 2
    line = pl._target(cell)
    assert line.startswith("**missed**") and "behind on seed(s) [2]" in line


def test_variants_never_share_a_model_file(tmp_path):
    pl = _load("pipelines")
    key = "resnet_tiny|shapes|0|variant@0.5"
    a, b = pl.model_file(tmp_path, key, '{"max_rate": 0.4}'), pl.model_file(tmp_path, key, '{"warmup_epochs": 6}')
    assert a != b and a.parent == b.parent == tmp_path
    assert pl.model_file(tmp_path, key, '{"max_rate": 0.4}') == a   # the same variant resumes its own file
    assert pl.model_file(tmp_path, "x/y.py:M|digits|1|plain").name == "x_y.py_M_digits_1_plain.pdparams"


@pytest.mark.slow
def test_grid_runs_and_resumes(tmp_path):
    pl = _load("pipelines")
    out = tmp_path / "p.json"
    argv = ["--archs", "resnet_tiny", "--keeps", "0.5", "--seeds", "0", "--epochs", "1", "--heal-epochs", "1",
            "--out", str(out), "--work", str(tmp_path / "work")]
    pl.main(argv)
    first = json.loads(out.read_text())
    assert set(first["trained"]) == {f"resnet_tiny|digits|0|{k}" for k in ("plain", "linear", "default@0.5")}
    assert len(first["runs"]) == len(pl.BASELINES) + 4   # + LayerDrop, ShortGPT linear, linear+survival, default
    assert all(len(r["removed"]) == 4 for r in first["runs"].values())
    pl.main(argv)   # everything is done: nothing is trained or healed again
    again = json.loads(out.read_text())
    assert again["trained"] == first["trained"] and again["runs"] == first["runs"]
    assert "| **default** |" in out.with_suffix(".md").read_text()
