"""compress.pruning.ablation and `compress ablate`: each unit alone switched off (the true ablation), against the criteria's
rankings, on blocks and on branches."""
from __future__ import annotations

import json
import math

import numpy as np
import paddle
import pytest

from compress.pruning.ablation import UnitAblation, fidelity, leave_one_out, split_score
from compress.graph.surgery import RemovedUnit
from helpers import invoke, one_line_error
from tiny_models import TinyCNN


def _batches(x, y, size=16):
    def gen():
        for i in range(0, len(x), size):
            yield paddle.to_tensor(x[i:i + size]), paddle.to_tensor(y[i:i + size])
    return gen


def test_a_useless_block_costs_nothing_and_a_useful_one_does():
    paddle.seed(0)
    model = TinyCNN(useless=1)       # stages.0.1's branch is multiplied by 0: switching it off changes nothing
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 1, 8, 8)).astype("float32"), rng.integers(0, 10, 40)
    base, deltas = leave_one_out(model, [RemovedUnit.of_block("stages.0.1"), RemovedUnit.of_block("stages.0.0")], _batches(x, y))
    assert base.images == 40 and math.isclose(base.loss, split_score(model, _batches(x, y)).loss, rel_tol=1e-9)
    (useless, useless_se, useless_acc), (useful, useful_se, _) = deltas
    assert useless == 0.0 and useless_se == 0.0 and useless_acc == 0.0
    assert useful != 0.0 and useful_se > 0
    assert split_score(model, _batches(x, y), max_images=24).images == 24


def test_fidelity_ranks_each_criterion_against_the_truth():
    units = [UnitAblation(i, f"b{i}", t, 0.0, {"good": s, "reversed": -s, "partial": s if i < 2 else None})
             for i, (t, s) in enumerate([(0.1, 1.0), (0.3, 2.0), (0.2, 1.5), (0.5, 9.0)])]
    got = {f.criterion: f for f in fidelity(units, {"good": "0"})}
    assert got["good"].spearman == pytest.approx(1.0) and got["good"].kendall == pytest.approx(1.0)
    assert got["reversed"].spearman == pytest.approx(-1.0)
    assert got["partial"].spearman is None and got["partial"].units == 2     # too few scored units to rank
    assert got["good"].extra_passes == "0" and got["reversed"].extra_passes == "?"


def test_ablate_command_on_blocks_writes_json_and_reads_only(trained_resnet, tmp_path):
    before = trained_resnet.read_bytes()
    out = tmp_path / "abl.json"
    res = invoke("ablate", trained_resnet, "--max-images", 64, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert json.loads(out.read_text()) == info
    assert info["base"]["images"] == 64 and info["true_passes"] == 9 and len(info["units"]) == 8
    crit = {f["criterion"]: f for f in info["fidelity"]}
    assert {"importance", "residual", "survival", "block-influence", "angular"} <= set(crit)
    assert all(-1 <= crit[c]["spearman"] <= 1 for c in crit if crit[c]["spearman"] is not None)
    assert all(u["loss_increase_stderr"] >= 0 for u in info["units"])
    assert trained_resnet.read_bytes() == before
    table = invoke("ablate", trained_resnet, "--max-images", 32)
    assert table.exit_code == 0 and "Spearman" in table.stdout and "true ablation: 9 passes over 32 images" in table.stdout


def test_ablate_on_branches_of_a_model_we_did_not_write(tmp_path):
    model = tmp_path / "deit.pdparams"
    res = invoke("train", "--arch", "zoo_models:DeiT", "--input-shape", "3,16,16", "--arch-kwargs",
                 '{"img": 16, "patch": 4, "depth": 2}', "--epochs", 1, "--drop-path-rate", 0.2, "--granularity",
                 "branch", "--out", model)
    assert res.exit_code == 0, res.output
    info = json.loads(invoke("ablate", model, "--max-images", 48, "--json").stdout)
    assert [u["unit"] for u in info["units"]] == ["blocks.0:attn", "blocks.0:mlp", "blocks.1:attn", "blocks.1:mlp"]
    assert all("importance" in u["scores"] and "block-influence" not in u["scores"] for u in info["units"])


def test_ablate_bad_input(trained_resnet, tmp_path):
    assert "max-images" in one_line_error(invoke("ablate", trained_resnet, "--max-images", 0))
    assert "--split must be one of" in one_line_error(invoke("ablate", trained_resnet, "--split", "dev"))
    assert "no such file" in one_line_error(invoke("ablate", tmp_path / "none.pdparams"))
    assert "--out" in one_line_error(invoke("ablate", trained_resnet, "--out", trained_resnet))
