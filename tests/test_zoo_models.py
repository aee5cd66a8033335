"""Residual blocks written as model zoos write them (tests/zoo_models.py): blocks called with extra arguments
(Swin's ``blk(x, input_dimensions)``, PVT's ``blk(x, H, W)``), blocks held in a plain Python list as well as
registered (ResNeXt), sublayer names containing dots (EfficientNet), skips through flatten/transpose/reshape
(UniFormer). Each is found, and goes through train -> prune (with healing) -> export with parity."""
from __future__ import annotations

import json

import paddle
import pytest

import compress
from compress.graph.blocks import discover_blocks
from helpers import invoke
from zoo_models import ZOO, SecondStream

ZOO_EXTRA = {"SecondStream": SecondStream}

# PVT and DottedNames repeat patterns the others cover end to end (12 s each on 2 cores): the full suite runs them
PATTERNS = ["Swin", pytest.param("PVT", marks=pytest.mark.slow), "ListResNeXt",
            pytest.param("DottedNames", marks=pytest.mark.slow), "ReshapeSkip"]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_pattern_has_the_units_read_off_its_code(name):
    factory, shape, units = ZOO[name]
    found = discover_blocks(factory(), shape)
    assert len(found.blocks) == units, [b.path for b in found.blocks]


def test_extra_arguments_are_recorded_and_the_stages_are_not_blocks():
    found = discover_blocks(ZOO["Swin"][0](), ZOO["Swin"][1])
    assert [b.path for b in found.blocks] == ["layers.0.blocks.0", "layers.0.blocks.1", "layers.1.blocks.0",
                                              "layers.1.blocks.1"]
    assert found.blocks[0].extra_args == ["tuple[int, int]"]
    kinds = {r.path: r.kind for r in found.rejected}
    assert kinds["layers.0.downsample"] == "shape"          # patch merging: never removable
    assert kinds["layers.0"] == "signature" and kinds["patch_embed"] == "signature"   # they return tuples
    pvt = discover_blocks(ZOO["PVT"][0](), ZOO["PVT"][1])
    assert pvt.blocks[0].extra_args == ["int", "int"] and pvt.blocks[0].path == "block1.0"


def test_dotted_names_are_printed_as_registered():
    found = discover_blocks(ZOO["DottedNames"][0](), ZOO["DottedNames"][1])
    assert [b.path for b in found.blocks] == ["_ef._blocks.0.", "_ef._blocks.1.", "_ef._blocks.3.", "_ef._blocks.4."]


def test_a_skip_through_reshapes_is_an_identity_path():
    found = discover_blocks(ZOO["ReshapeSkip"][0](), ZOO["ReshapeSkip"][1])
    sa = [b for b in found.blocks if b.path.startswith("blocks2.")]
    assert len(sa) == 3
    assert {"Tensor.flatten", "Tensor.transpose", "Tensor.reshape"} <= set(sa[0].skip_ops)
    # its conv positional embedding is added without the block's DropPath: the block is driven whole
    assert sa[0].own_droppath == [] and "does not cover every branch (pos_embed" in sa[0].note


@pytest.mark.parametrize("name", PATTERNS)
def test_zoo_pattern_trains_prunes_heals_and_exports_verified(name, tmp_path):
    _, shape, units = ZOO[name]
    model, pruned, out = tmp_path / "m.pdparams", tmp_path / "p.pdparams", tmp_path / "exp"
    arch = ["--arch", f"zoo_models:{name}", "--input-shape", ",".join(map(str, shape))]
    res = invoke("train", *arch, "--epochs", 1, "--drop-path-rate", 0.2, "--batch-size", 64, "--out", model)
    assert res.exit_code == 0, res.output
    res = invoke("prune", model, "--keep", 0.5, "--epochs", 1, "--batch-size", 64, "--out", pruned, "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["surgery_check"]["max_abs_diff"] == 0.0
    removed = r["plan"]["remove_paths"]
    assert r["plan"]["blocks_before"] == units and len(removed) == units - r["plan"]["blocks_after"] >= units // 2
    bundle = compress.load_model(pruned)
    assert bundle.sidecar["removed_blocks"] == removed
    state_keys = set(bundle.model.state_dict())
    assert not any(k.startswith(p + ".") for p in removed for k in state_keys)    # their weights are gone
    res = invoke("export", pruned, "--out", out, "--format", "paddle,onnx", "--json")
    assert res.exit_code == 0, res.output
    runtimes = json.loads(res.stdout)["parity"]["runtimes"]
    assert {"paddle_inference", "onnxruntime"} <= set(runtimes)
    assert all(r["passed"] and r["argmax_agreement"] == 1.0 for r in runtimes.values()), runtimes


def test_removed_block_takes_the_extra_arguments():
    model = ZOO["PVT"][0]()
    model.eval()
    x = paddle.randn([2, *ZOO["PVT"][1]])
    compress.graph.surgery.remove_blocks(model, ["block1.1", "block2.0"])
    assert list(model(x).shape) == [2, 10]
    assert isinstance(model.block1[1], paddle.nn.Identity)


SWIN_T = {"img": 224, "patch": 4, "dim": 96, "depths": [2, 2, 6, 2], "heads": [3, 6, 12, 24], "window": 7}


@pytest.mark.slow
def test_swin_t_sized_model_at_224_prunes_and_exports_verified(tmp_path):
    base, pruned = tmp_path / "swin_t.pdparams", tmp_path / "swin_t.keep0.5.pdparams"
    res = invoke("train", "--arch", "zoo_models:Swin", "--arch-kwargs", json.dumps(SWIN_T), "--input-shape",
                 "3,224,224", "--epochs", 0, "--drop-path-rate", 0, "--out", base, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["blocks"] == 12
    res = invoke("prune", base, "--keep", 0.5, "--criterion", "every-other", "--epochs", 0, "--out", pruned, "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["plan"]["blocks_after"] == 6 and r["surgery_check"]["max_abs_diff"] <= 1e-5
    res = invoke("export", pruned, "--out", tmp_path / "exp", "--format", "paddle,onnx", "--json")
    assert res.exit_code == 0, res.output
    assert all(f["passed"] for f in json.loads(res.stdout)["parity"]["runtimes"].values())


def test_a_factory_failing_in_its_own_code_is_one_line_naming_it():
    from helpers import one_line_error

    err = one_line_error(invoke("blocks", "--arch", "zoo_models:FactoryFailing", "--input-shape", "3,16,16"))
    assert "building the model zoo_models:FactoryFailing failed in its own code: AttributeError" in err
    assert "zoo_models.py:" in err


def test_a_factory_defaulting_to_pretrained_is_built_without_downloading():
    res = invoke("blocks", "--arch", "zoo_models:FactoryPretrained", "--input-shape", "3,32,32", "--json")
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["blocks"]) == 8
    assert "built with pretrained=False" in res.stderr


def test_headline_names_why_residual_layers_are_no_blocks():
    res = invoke("blocks", "--arch", "zoo_models:TupleBlocks", "--input-shape", "3,16,16", "-v")
    assert res.exit_code == 0, res.output
    out = " ".join(res.stdout.split())
    assert "3 residual layers (x + f(x)) were found, but 3 cannot be called as a block" in out
    assert "returns a tuple" in out and "blocks.2" in out
    info = json.loads(invoke("blocks", "--arch", "zoo_models:TupleBlocks", "--input-shape", "3,16,16",
                             "--json").stdout)
    shown = {r["path"]: r for g in info["rejected_groups"] for r in g["rejected"]}
    assert all(shown[f"blocks.{i}"]["residual"] for i in range(3))
    res = invoke("train", "--arch", "zoo_models:TupleBlocks", "--input-shape", "3,16,16", "--epochs", 0,
                 "--drop-path-rate", 0.1, "--out", "never.pdparams")
    assert res.exit_code == 2 and "3 residual layers (x + f(x)) were found" in res.stderr


def test_a_second_tensor_of_the_input_shape_makes_no_block_unless_it_is_the_input():
    found = discover_blocks(ZOO_EXTRA["SecondStream"](), (3, 8, 8))
    assert [b.path for b in found.blocks] == ["same"]
    body = next(r for r in found.rejected if r.path == "body")
    assert body.kind == "signature" and "second tensor of the first's shape" in body.reason
