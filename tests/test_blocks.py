"""Block discovery through its API (compress.graph.blocks): the shipped samples, paddle.vision models,
zoo-style architectures built in the tests, networks without any block, user patterns, and the
`compress blocks` listing."""
from __future__ import annotations

import json

import numpy as np
import paddle
import pytest

from compress.model.architectures import ARCHITECTURES
from compress.graph.blocks import compile_pattern, discover_blocks, find_blocks, group_rejections
from compress.common.errors import CompressError
from compress.model.bundle import ArchSpec, build_model
from compress.workflows.inspect import describe_blocks
from helpers import invoke, one_line_error, paths, reasons
from tiny_models import TinyCNN, TinyTransformer
from zoo_models import VGG, ConvNeXt, DeiT, TinyLCNet




@pytest.fixture(autouse=True)
def _seed():
    paddle.seed(0)
    np.random.seed(0)


# --------------------------------------------------------------------------- tiny test models
def test_cnn_blocks_exclude_stem_and_downsampling():
    blocks = find_blocks(TinyCNN(), (1, 8, 8))
    assert [b.path for b in blocks] == ["stages.0.0", "stages.0.1", "stages.1.1", "stages.1.2"]
    assert all(b.droppath == "wrapped" and b.residual for b in blocks)
    assert blocks[0].params == 8 * 8 * 9 + 8 + 4 * 8   # conv w+b, bn (weight, bias, mean, var)


def test_transformer_nested_layerlists():
    blocks = find_blocks(TinyTransformer(), (1, 8, 8))
    assert [b.path for b in blocks] == ["groups.0.0", "groups.0.1", "groups.1.0", "groups.1.1"]


def test_a_stage_is_a_composition_of_its_blocks():
    found = discover_blocks(TinyCNN(), (1, 8, 8))
    assert "stages.0" not in paths(found.blocks)
    assert reasons(found.rejected)["stages.0"].startswith("composition of 2 residual blocks")


def test_own_droppath_detected_on_vit():
    model = build_model(ArchSpec("vit_tiny", {"depth": 3, "dim": 16, "heads": 2}), (1, 16, 16), 10)
    blocks = find_blocks(model, (1, 16, 16))
    assert len(blocks) == 3 and all(b.own_droppath == ["drop_path"] for b in blocks)


# --------------------------------------------------------------------------- shipped samples
def test_shipped_resnet_tiny():
    f, shape = ARCHITECTURES["resnet_tiny"]
    found = discover_blocks(f(), shape)
    assert paths(found.blocks) == [f"stages.0.{i}" for i in range(4)] + [f"stages.1.{i}" for i in range(1, 5)]
    r = reasons(found.rejected)
    assert r["stages.0"].startswith("composition of 4 residual blocks")
    assert r["stages.1.0"].startswith("shape changes")          # the Downsample transition
    assert all(b.branches == 1 and b.skip_ops == ["Tensor.__add__"] for b in found.blocks)


def test_shipped_vit_tiny():
    f, shape = ARCHITECTURES["vit_tiny"]
    found = discover_blocks(f(), shape)
    assert paths(found.blocks) == [f"blocks.{i}" for i in range(8)]
    assert all(b.branches == 2 and b.droppath == "own" for b in found.blocks)   # x + attn + mlp
    r = reasons(found.rejected)
    assert "called 2 times" in r["blocks.0.drop_path"]
    assert "does not contain the input" in r["blocks.0.attn"]
    assert "not called" in r["blocks"]                          # the LayerList itself


def test_shipped_architectures_have_8_blocks():
    for name in ARCHITECTURES:
        info = describe_blocks(arch=name, num_classes=10)
        assert len(info["blocks"]) >= 8, name
        assert abs(sum(b["flops_share"] for b in info["blocks"]) - 1) < 0.1
        assert info["flops"] > 0 and info["params"] > 0 and info["message"] is None


def test_shipped_sidecars_list_the_blocks_discovery_finds():
    from compress.model.bundle import load_model
    from compress.workflows.sweep import sample_model

    for name in ("resnet_tiny", "vit_tiny"):
        bundle = load_model(sample_model(name))
        recorded = [b["path"] for b in bundle.sidecar.blocks]
        assert paths(find_blocks(bundle.model, bundle.input_shape)) == recorded
        assert [s["block"] for s in bundle.sidecar.statistics] == recorded


# --------------------------------------------------------------------------- paddle.vision
def test_resnet18():
    m = paddle.vision.models.resnet18(pretrained=False)
    found = discover_blocks(m, (3, 64, 64))
    assert paths(found.blocks) == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    assert all(b.tail == ["F.relu"] for b in found.blocks)     # post-activation: relu(x + f(x))
    r = reasons(found.rejected)
    assert "projection on the skip path (layer2.0.downsample)" in r["layer2.0"]
    assert r["layer1"].startswith("composition of 2 residual blocks")


def test_resnet50():
    m = paddle.vision.models.resnet50(pretrained=False)
    blocks = find_blocks(m, (3, 64, 64))
    expected = [n for n, l in m.named_sublayers() if type(l).__name__ == "BottleneckBlock" and l.downsample is None]
    assert paths(blocks) == expected and len(expected) == 12


@pytest.mark.parametrize("factory", ["mobilenet_v2", "mobilenet_v3_small"])
def test_mobilenets_inverted_residuals(factory):
    m = getattr(paddle.vision.models, factory)(pretrained=False)
    found = discover_blocks(m, (3, 64, 64))
    expected = [n for n, l in m.named_sublayers() if getattr(l, "use_res_connect", False)]
    assert expected and paths(found.blocks) == expected
    op = "Tensor.__add__" if factory == "mobilenet_v2" else "paddle.add"
    assert all(b.skip_ops == [op] for b in found.blocks)
    r = reasons(found.rejected)
    if factory == "mobilenet_v2":   # the depthwise conv-BN-ReLU6 that the shape-only rule took for blocks
        assert paths(found.blocks) == [f"features.{i}" for i in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16)]
        assert "does not contain the input" in r["features.3.conv.1"]
    else:
        se = [p for p in r if p.endswith("mid_se")]
        assert se and all("gating" in r[p] for p in se)


# --------------------------------------------------------------------------- zoo-style models
def test_deit_vit():
    found = discover_blocks(DeiT(), (3, 32, 32))
    assert paths(found.blocks) == [f"blocks.{i}" for i in range(4)]
    assert all(b.own_droppath == ["drop_path"] for b in found.blocks)
    r = reasons(found.rejected)
    assert "parameters/constants" in r["pos_embed"]
    assert "does not contain the input" in r["blocks.0.mlp"]
    assert "shape changes" in r["patch_embed"]


def test_convnext():
    found = discover_blocks(ConvNeXt(), (3, 64, 64))
    assert paths(found.blocks) == [f"stages.{i}.{j}" for i in range(4) for j in range(2)]
    r = reasons(found.rejected)
    assert all(r[f"stages.{i}"].startswith("composition of 2 residual blocks") for i in range(4))
    assert "shape changes" in r["downsample_layers.1"]
    assert "multiplied or divided by" in r["downsample_layers.0.1"]     # the arithmetic LayerNorm is no block


def test_convnext_v2_grn_is_nested_not_a_block():
    found = discover_blocks(ConvNeXt(v2=True), (3, 64, 64))
    assert paths(found.blocks) == [f"stages.{i}.{j}" for i in range(4) for j in range(2)]
    assert "nested inside block stages.0.0" in reasons(found.rejected)["stages.0.0.grn"]


# --------------------------------------------------------------------------- no removable unit
def test_vgg_has_no_blocks():
    found = discover_blocks(VGG(), (3, 32, 32))
    assert found.blocks == []
    r = reasons(found.rejected)
    assert "does not contain the input through additions" in r["features.3"]   # a 16->16 conv
    assert "only elementwise ops" in r["features.2"]                           # a ReLU
    assert "shape changes" in r["features.6"]


def test_lcnet_has_no_blocks():
    found = discover_blocks(TinyLCNet(), (3, 64, 64))
    assert found.blocks == []
    r = reasons(found.rejected)
    assert "does not contain the input through additions" in r["blocks3.1"]   # 64->64, stride 1, no skip
    assert "gating" in r["blocks4.1.se"] and "paddle.multiply" in r["blocks4.1.se"]


def test_no_blocks_gets_a_clear_message_in_the_cli():
    res = invoke("blocks", "--arch", "zoo_models:TinyLCNet", "--input-shape", "3,32,32")
    assert res.exit_code == 0, res.output
    assert "no removable blocks" in res.stdout and "residual connection" in res.stdout
    assert "--blocks-from" in res.stdout and "--verbose" in res.stdout


def test_training_droppath_without_blocks_is_refused(tmp_path):
    res = invoke("train", "--arch", "zoo_models:VGG", "--arch-kwargs", '{"in_chans": 1}', "--input-shape", "1,8,8",
                 "--epochs", "0", "--out", tmp_path / "vgg.pdparams")
    assert "DropPath has nothing to act on" in one_line_error(res) and "--blocks-from" in res.stderr
    assert not (tmp_path / "vgg.pdparams").exists()


# --------------------------------------------------------------------------- user patterns
def test_blocks_from_glob_and_regex():
    f, shape = ARCHITECTURES["resnet_tiny"]
    found = discover_blocks(f(), shape, "stages.*.*")
    assert len(found.blocks) == 8 and all(b.residual for b in found.blocks)
    assert "shape changes" in reasons(found.rejected)["stages.1.0"]
    f, shape = ARCHITECTURES["vit_tiny"]
    assert paths(find_blocks(f(), shape, r"blocks\.\d+")) == [f"blocks.{i}" for i in range(8)]
    assert paths(find_blocks(f(), shape, "blocks.*")) == [f"blocks.{i}" for i in range(8)]  # '*' within a segment
    assert paths(find_blocks(f(), shape, "re:blocks\\.[0-3]")) == [f"blocks.{i}" for i in range(4)]


def test_blocks_from_forced_non_residual_and_nested():
    found = discover_blocks(VGG(), (3, 32, 32), "features.*")
    b = {x.path: x for x in found.blocks}["features.3"]        # shape-preserving conv of a plain net: on request
    assert not b.residual and "no skip connection" in b.note
    assert "shape changes" in reasons(found.rejected)["features.0"]
    m = paddle.vision.models.mobilenet_v2(pretrained=False)
    found = discover_blocks(m, (3, 64, 64), r"features\.\d+(\.conv)?")
    assert "features.3" in paths(found.blocks)
    assert "nested inside matched block features.3" in reasons(found.rejected)["features.3.conv"]
    with pytest.raises(CompressError, match="matches no sublayer"):
        discover_blocks(m, (3, 64, 64), "nothing.*")


def test_glob_translation():
    assert compile_pattern("features.*").fullmatch("features.3")
    assert not compile_pattern("features.*").fullmatch("features.3.conv")
    assert compile_pattern("layer**").fullmatch("layer1.0.conv1")
    with pytest.raises(CompressError, match="not a valid regular expression"):
        compile_pattern("re:blocks(")


def test_blocks_from_is_recorded_and_followed_by_later_commands(tmp_path):
    """train records the pattern; prune finds the same blocks from the sidecar alone."""
    out = tmp_path / "t.pdparams"
    res = invoke("train", "--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8", "--epochs", "0",
                 "--blocks-from", "stages.0.*", "--out", out)
    assert res.exit_code == 0, res.output
    sc = json.loads(out.with_name("t.compress.json").read_text())
    assert sc["blocks_from"] == "stages.0.*" and [b["path"] for b in sc["blocks"]] == ["stages.0.0", "stages.0.1"]
    res = invoke("blocks", out, "--json")
    assert [b["path"] for b in json.loads(res.stdout)["blocks"]] == ["stages.0.0", "stages.0.1"]
    res = invoke("prune", out, "--blocks", "1", "--epochs", "0", "--criterion", "every-other", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["plan"]["remove_paths"] == ["stages.0.1"]
    pruned = json.loads(res.stdout)["out"]
    csc = json.loads(open(pruned.replace(".pdparams", ".compress.json")).read())
    assert csc["blocks_from"] == "stages.0.*" and [b["path"] for b in csc["blocks"]] == ["stages.0.0"]


# --------------------------------------------------------------------------- the listing
def test_verbose_listing_is_grouped_and_short():
    res = invoke("blocks", "--arch", "paddle.vision.models:resnet18", "--input-shape", "3,32,32", "-v")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "5 removable blocks" in out and "layer1.0" in out
    assert "projection" in out and "layer2.0" in out and "composition of residual blocks" in out
    assert "layer2.0.conv1" not in out                      # leaf layers and block insides are summarised
    assert "more sublayers not listed" in out


def test_grouping_keeps_the_candidates_a_reader_weighs():
    found = discover_blocks(paddle.vision.models.mobilenet_v2(pretrained=False), (3, 32, 32))
    groups, hidden = group_rejections(found)
    shown = {r.path for g in groups for r in g.rejected}
    assert {"features.1", "features.2", "features.17", "classifier"} <= shown
    assert not any(p.startswith("features.2.") or p.startswith("features.3.") for p in shown)
    assert hidden + len(shown) == len(found.rejected)
    everything, none_hidden = group_rejections(found, everything=True)
    assert none_hidden == 0 and sum(len(g.rejected) for g in everything) == len(found.rejected)


def test_json_lists_every_rejection_with_its_kind():
    info = json.loads(invoke("blocks", "--arch", "zoo_models:ConvNeXt", "--input-shape", "3,32,32", "--json").stdout)
    kinds = {r["path"]: r["kind"] for r in info["rejected"]}
    assert kinds["stages.0"] == "composition" and kinds["downsample_layers.1"] == "shape"
    assert [b["path"] for b in info["blocks"]][:2] == ["stages.0.0", "stages.0.1"]
    assert info["blocks"][0]["skip"] == ["Tensor.__add__"] and info["blocks"][0]["droppath"] == "own"
