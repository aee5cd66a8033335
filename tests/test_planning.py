"""`prune --keep-flops` (a FLOPs budget) and surgery's self-check, through the CLI and the library."""
import json
import shutil

import pytest

import compress
from compress.common.errors import CompressError
from compress.pruning.planning import PruneTarget, budget_removal
from helpers import invoke, one_line_error


def test_budget_rule_weighs_cost_against_flops():
    # unit 0 is cheap per FLOP and large; units 1-3 small: the large cheap one alone meets a 0.6 budget
    flops, costs = [40, 10, 10, 10], [0.4, 0.05, 0.06, 0.07]
    assert budget_removal(flops, costs, 100, 0.6) == [0]
    # 0.9: one small unit is enough, the cheapest per FLOP (unit 1); 0.85: two of them
    assert budget_removal(flops, costs, 100, 0.9) == [1]
    assert budget_removal(flops, costs, 100, 0.85) == [1, 2]
    # the put-back pass: greedy takes 1, 2, 3 (cheaper per FLOP) and then 0; 1, 2 and 3 are then not needed
    assert budget_removal([40, 10, 10, 10], [0.6, 0.1, 0.1, 0.1], 100, 0.6) == [0]
    # a negative importance costs nothing: the unit that removes more FLOPs goes first
    assert budget_removal([10, 30, 10], [-0.2, -0.1, 1.0], 100, 0.75) == [1]
    assert budget_removal(flops, costs, 100, 1.0) == []
    with pytest.raises(CompressError, match="out of reach.*0.400"):
        budget_removal(flops, costs, 100, 0.2)            # at least one unit stays: 100 - 40 - 10 - 10
    with pytest.raises(CompressError, match="give keep K"):
        PruneTarget()
    with pytest.raises(CompressError, match="give one of keep, keep_flops or blocks, not keep and keep_flops"):
        PruneTarget(keep=0.5, keep_flops=0.5)


@pytest.fixture()
def sample(trained_resnet, tmp_path):
    """The shipped resnet_tiny (8 blocks, adaptive statistics) in a directory of its own."""
    dst = tmp_path / "r.pdparams"
    shutil.copy(trained_resnet, dst)
    shutil.copy(trained_resnet.with_name(trained_resnet.stem + ".compress.json"), tmp_path / "r.compress.json")
    return dst


def test_dry_run_shows_the_budget_plan(sample):
    res = invoke("prune", sample, "--keep-flops", 0.6, "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)["plan"]
    assert plan["keep_flops"] == 0.6 and plan["keep"] is None
    assert plan["flops_ratio"] <= 0.6 and plan["flops_ratio"] == plan["flops_after"] / plan["flops_before"]
    assert [r["index"] for r in plan["removed"]] == plan["remove"]
    assert sum(r["flops"] for r in plan["removed"]) == plan["flops_before"] - plan["flops_after"]
    # no block could come back within the budget
    assert all(plan["flops_after"] + r["flops"] > 0.6 * plan["flops_before"] for r in plan["removed"])
    text = invoke("prune", sample, "--keep-flops", 0.6, "--dry-run")
    assert text.exit_code == 0 and f"FLOPs ratio: {plan['flops_ratio']:.3f} (budget 0.6)" in text.stdout
    assert "FLOPs, 12." in text.stdout and "dry run: nothing written" in text.stdout
    assert sorted(p.name for p in sample.parent.iterdir()) == ["r.compress.json", "r.pdparams"]


def test_budget_flags_are_checked(sample):
    err = one_line_error(invoke("prune", sample, "--keep", 0.5, "--keep-flops", 0.5))
    assert "--keep and --keep-flops" in err
    assert "--blocks and --keep-flops" not in err
    assert "--keep-flops and --blocks" in one_line_error(invoke("prune", sample, "--keep-flops", 0.5, "--blocks", "1"))
    assert "--keep-flops must be in (0, 1]" in one_line_error(invoke("prune", sample, "--keep-flops", 0))
    assert "--keep-flops must be in (0, 1]" in one_line_error(invoke("prune", sample, "--keep-flops", "nan"))
    assert "--keep-flops 0.05 is out of reach" in one_line_error(invoke("prune", sample, "--keep-flops", 0.05))
    assert "give --keep K (0 < K <= 1), --keep-flops F" in one_line_error(invoke("prune", sample))


def test_budget_prune_records_ratio_and_self_check(sample):
    res = invoke("prune", sample, "--keep-flops", 0.7, "--epochs", 0)
    assert res.exit_code == 0, res.output
    assert "surgery self-check: max abs diff 0 on 32 images (allowed 1e-05)" in res.stdout
    out = sample.with_name("r.flops0.7.pdparams")
    bundle = compress.load_model(out)
    step = bundle.sidecar.lineage[-1]
    assert step["keep_flops"] == 0.7 and step["surgery_check"]["images"] == 32
    assert 0 <= step["surgery_check"]["max_abs_diff"] <= 1e-5
    # the FLOPs counted on the pruned model are the plan's: per-block attribution is exact
    assert step["flops_after"] == bundle.sidecar.flops
    assert step["flops_ratio"] == step["flops_ratio_total"] <= 0.7
    # a second prune: the total ratio is relative to the original
    res = invoke("prune", out, "--keep-flops", 0.8, "--epochs", 0, "--json")
    assert res.exit_code == 0, res.output
    second = compress.load_model(sample.with_name("r.flops0.7.flops0.8.pdparams")).sidecar.lineage[-1]
    assert second["flops_ratio"] <= 0.8
    assert second["flops_ratio_total"] == pytest.approx(second["flops_after"] / step["flops_before"])
    assert json.loads(res.stdout)["surgery_check"]["images"] == 32


def test_a_body_used_elsewhere_fails_the_prune_and_writes_nothing(tmp_path):
    m = tmp_path / "side.pdparams"
    res = invoke("train", "--arch", "tiny_models:SideHeadCNN", "--input-shape", "1,8,8", "--epochs", 0,
                 "--drop-path-rate", 0, "--out", m)
    assert res.exit_code == 0, res.output
    before = sorted(tmp_path.iterdir())
    err = one_line_error(invoke("prune", m, "--blocks", "0,1", "--epochs", 0), code=3)
    assert "surgery self-check failed: removing block 1 (blocks.1)" in err and "blocks.0" not in err
    assert "nothing written" in err
    assert sorted(tmp_path.iterdir()) == before
    assert invoke("prune", m, "--blocks", "0", "--epochs", 0).exit_code == 0   # the untapped block is fine


def test_a_sidecar_with_a_mistyped_check_is_refused(sample, tmp_path):
    out = tmp_path / "p.pdparams"
    assert invoke("prune", sample, "--blocks", "1", "--epochs", 0, "--out", out).exit_code == 0
    sc_path = tmp_path / "p.compress.json"
    sc = json.loads(sc_path.read_text())
    sc["lineage"][-1]["surgery_check"]["images"] = "32"
    sc_path.write_text(json.dumps(sc))
    err = one_line_error(invoke("stats", out))
    assert "lineage must be" in err and "surgery_check" in err


def test_keep_column_shows_the_flops_ratio():
    from compress.measure.reporting import build_report
    from compress.measure.summary import render_table

    def entry(name, keep, parent, flops, keep_flops=None):
        return {"name": name, "path": f"/m/{name}.pdparams", "keep": keep, "parent": parent, "accuracy": 0.9,
                "params": 10, "flops": flops, "blocks": 4, "keep_flops": keep_flops,
                "runtimes": [{"runtime": "onnxruntime", "batch": 1, "threads": 1, "latency_ms_p50": flops / 1e3,
                              "runs": 10}]}
    rep = build_report([entry("m", 1.0, None, 1000), entry("m.flops0.6", 0.5, "m", 516, 0.516),
                        entry("m.keep0.5", 0.5, "m", 516)], None)
    keeps = {r["model"]: r["keep"] for r in render_table(rep)}
    assert keeps == {"m *": "1 (4 of 4 blocks)", "m.flops0.6": "F0.52 (4 of 4 blocks)", "m.keep0.5": "0.5 (4 of 4 blocks)"}
    assert [r["keep_flops"] for r in rep["rows"]] == [None, 0.516, None]


def test_sweep_over_flops_budgets(tmp_path):
    base = tmp_path / "tiny.pdparams"
    res = invoke("train", "--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8", "--epochs", 1,
                 "--drop-path-rate", 0.2, "--out", base)
    assert res.exit_code == 0, res.output
    out = tmp_path / "sw"
    assert "--keep or --keep-flops" in one_line_error(invoke("sweep", base, "--keep", "0.5", "--keep-flops", "0.5",
                                                             "--out", out))
    assert "--keep-flops ratios must be in (0, 1]" in one_line_error(invoke("sweep", base, "--keep-flops", "0,0.5",
                                                                            "--out", out))
    res = invoke("sweep", base, "--keep-flops", "1.0,0.6", "--criterion", "importance", "--epochs", 0, "--out", out,
                 "--runs", 5, "--warmup", 10, "--seconds", 0, "--batch", "1", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert set(rep["sweep"]) == {"F0.6"} and rep["sweep"]["F0.6"]["flops_ratio"] <= 0.6
    row = next(r for r in rep["rows"] if r["model"] == "tiny.flops0.6")
    assert row["keep_flops"] == pytest.approx(rep["sweep"]["F0.6"]["flops_ratio"]) == pytest.approx(row["flops_ratio"])
    assert "keep F0." in rep["headline"]
    assert f"F{row['keep_flops']:.2f}" in (out / "report.md").read_text()
