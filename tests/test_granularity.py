"""`--granularity branch`: per-branch DropPath, statistics, planning, surgery, sidecar, export (timm-style ViT)."""
import json

import numpy as np
import paddle
import pytest

import compress
from compress.graph.branches import units_with_flops
from compress.training.droppath import StochasticDepth
from compress.training.statistics import SurvivalStats
from compress.graph.surgery import switched_off
from helpers import invoke, one_line_error
from tiny_models import TimmViT

KW = '{"img_size": 8, "depth": 3, "embed_dim": 16}'


@pytest.fixture(scope="module")
def branchy(tmp_path_factory):
    out = tmp_path_factory.mktemp("branch") / "v.pdparams"
    res = invoke("train", "--arch", "tiny_models:TimmViT", "--arch-kwargs", KW, "--input-shape", "1,8,8",
                 "--epochs", 2, "--drop-path-rate", 0.2, "--schedule", "adaptive", "--warmup-epochs", 1,
                 "--granularity", "branch", "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_each_branch_takes_its_own_mask():
    """Dropped samples of a branch equal the model with that DropPath call switched off; the two branches
    of a block draw different masks."""
    paddle.seed(0)
    model = TimmViT(img_size=8, depth=2, embed_dim=16)
    units, _, _ = units_with_flops(model, (1, 8, 8), None, "branch")
    x = paddle.randn([32, 1, 8, 8])
    model.eval()
    with switched_off(model, [units[2].removed_unit()]):
        want = model(x).numpy()
    sd = StochasticDepth(model, units, SurvivalStats(len(units), [u.path for u in units])).attach()
    sd.set_rates(np.array([0.0, 0.0, 0.5, 0.0]))
    model.train()
    got = model(x).numpy()
    masks = sd.step_masks(32)
    sd.set_rates(np.array([0.5, 0.5, 0.0, 0.0]))
    model(x)
    both = sd.step_masks(32)
    sd.detach()
    assert (~masks[2]).any() and masks[2].any() and masks[[0, 1, 3]].all()
    np.testing.assert_allclose(got[~masks[2]], want[~masks[2]], atol=1e-5)
    assert np.abs(got[masks[2]] - want[masks[2]]).min() > 1e-4
    assert not (both[0] == both[1]).all()  # the two branches of a block draw their own masks


def test_train_records_units(branchy):
    sc = compress.load_model(branchy).sidecar
    assert sc.granularity == "branch" and len(sc.branches) == 6 and len(sc.blocks) == 3
    names = [s["block"] for s in sc.statistics]
    assert names == ["blocks.0:attn", "blocks.0:mlp", "blocks.1:attn", "blocks.1:mlp", "blocks.2:attn", "blocks.2:mlp"]
    assert all(s["residual_ratio"] is not None and s["importance_stderr"] is not None for s in sc.statistics)
    assert len(sc.training["history"][-1]["rates"]) == 6
    res = invoke("stats", branchy)
    assert res.exit_code == 0 and "blocks.2:mlp" in res.stdout and "unit" in res.stdout


def test_prune_branches_to_a_budget_exports_smaller_graphs(branchy, tmp_path):
    res = invoke("prune", branchy, "--keep-flops", 0.6, "--dry-run", "--json")
    plan = json.loads(res.stdout)["plan"]
    assert plan["granularity"] == "branch" and plan["flops_ratio"] <= 0.6
    out = tmp_path / "p.pdparams"
    res = invoke("prune", branchy, "--keep-flops", 0.6, "--epochs", 1, "--out", out, "--export", tmp_path / "x",
                 "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["plan"]["removed"] == plan["removed"] and r["surgery_check"]["max_abs_diff"] <= 1e-5
    sc = compress.load_model(out).sidecar
    gone = [u for u in r["plan"]["removed"]]
    assert {(b["block"], b["call"]) for b in sc.removed_branches} | set(sc.removed_blocks) \
        >= {(u["block_path"], u["call"]) for u in gone if u["block_path"] not in sc.removed_blocks}
    assert [u["label"] for u in sc.lineage[-1]["removed_units"]] == [u["label"] for u in gone]
    # the graphs lose the removed branches' matmuls: 4 per attention (qkv, q@k, attn@v, proj), 2 per MLP, 1 head
    kept = [u["kind"] for u in sc.branches]
    whole = [b for b in sc.blocks if not any(u["block_path"] == b["path"] for u in sc.branches)]
    matmuls = 4 * kept.count("attn") + 2 * kept.count("mlp") + 6 * len(whole) + 1
    assert matmuls < 6 * 3 + 1
    ex = r["export"]
    assert ex["graphs"]["paddle"]["op_types"]["matmul"] == matmuls
    assert ex["graphs"]["onnx"]["op_types"]["MatMul"] == matmuls
    assert all(v["passed"] for v in ex["parity"]["runtimes"].values())


def test_block_only_criteria_and_mismatched_statistics_refuse(branchy):
    res = invoke("prune", branchy, "--keep", 0.5, "--criterion", "block-influence", "--dry-run")
    assert "compares a whole block's input and output" in one_line_error(res)
    res = invoke("prune", branchy, "--keep", 0.5, "--granularity", "block", "--dry-run")
    assert "recorded per branch" in one_line_error(res) and "--granularity" in res.output
    res = invoke("prune", branchy, "--keep", 0.5, "--granularity", "layer", "--dry-run")
    assert "--granularity must be one of block, branch" in one_line_error(res)
    res = invoke("train", "--arch", "vit_tiny", "--granularity", "layer", "--out", branchy.parent / "z.pdparams")
    assert "--granularity must be one of block, branch" in one_line_error(res)


def test_a_mistyped_removed_branch_is_refused(branchy, tmp_path):
    from compress.model.sidecar import Sidecar, parse_sidecar
    text = json.dumps({**Sidecar().to_json(), "removed_branches": [{"block": "blocks.0", "call": -1, "body": [],
                                                                     "shape": [4]}]})
    with pytest.raises(compress.CompressError, match="removed_branches must be"):
        parse_sidecar(text, "x.compress.json")


def test_removed_branches_are_named_in_the_plot_and_the_report(branchy, tmp_path):
    out = tmp_path / "p.pdparams"
    res = invoke("prune", branchy, "--keep-flops", 0.7, "--epochs", 0, "--out", out)
    assert res.exit_code == 0, res.output
    sc = compress.load_model(out).sidecar
    labels = [u["label"] for u in sc.removed_units]
    assert labels and all(" at depth " in x for x in labels)
    from compress.workflows.inspect import _branch_grid, plot_stats, read_stats
    info = read_stats(out)
    grid = _branch_grid(info)
    assert sorted(k for k, v in grid.items() if not v) == sorted((u["kind"], u["depth"]) for u in sc.removed_units
                                                                 if u["kind"] != "block")
    plot_stats(info, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0
    from compress.measure.rendering import render_markdown
    md = render_markdown({"models": [{"name": "p", "removed": labels}], "headline": "h"})
    assert "## Removed units" in md and labels[0] in md


def test_a_block_level_sidecar_has_no_branch_keys(tmp_path):
    from compress.training.config import FitConfig
    from compress.workflows.train import train
    for g, keys in (("block", []), ("branch", ["granularity", "branches"])):
        train(tmp_path / f"{g}.pdparams", arch="vit_tiny", arch_kwargs={"depth": 2, "dim": 16},
              config=FitConfig(epochs=0, granularity=g))
        d = json.loads((tmp_path / f"{g}.compress.json").read_text())
        assert [k for k in ("granularity", "branches", "removed_branches") if k in d] == keys
