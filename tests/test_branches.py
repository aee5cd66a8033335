"""Branch discovery (compress.graph.branches): one unit per DropPath call of a block's own DropPath."""
import paddle
import pytest

from compress.model.architectures import vit_tiny
from compress.graph.blocks import find_blocks
from compress.graph.branches import check_granularity, find_branches, units_with_flops
from compress.common.errors import CompressError
from compress.graph.flops import count_flops
from compress.common.layers import count_params
from compress.graph.surgery import ZeroBranch, check_removal, remove_branch
from helpers import invoke
from tiny_models import TimmViT, TinyCNN

SHAPE = (1, 16, 16)


def _vit():
    paddle.seed(0)
    return vit_tiny(depth=3)


def _timm():
    paddle.seed(0)
    return TimmViT(depth=3)


@pytest.mark.parametrize("make, dp", [(_vit, ["drop_path", "drop_path"]), (_timm, ["drop_path1", "drop_path2"])])
def test_one_branch_per_droppath_call(make, dp):
    model = make()
    units, blocks, total = units_with_flops(model, SHAPE, None, "branch")
    assert len(blocks) == 3 and len(units) == 6
    assert [u.kind for u in units[:2]] == ["attn", "mlp"] and [u.droppath for u in units[:2]] == dp
    assert units[0].body[:2] == ["norm1", "attn"] and units[1].body[:2] == ["norm2", "mlp"]
    assert [u.path for u in units[:2]] == ["blocks.0:attn", "blocks.0:mlp"]
    assert [u.index for u in units] == list(range(6)) and [u.call for u in units[:2]] == [0, 1]
    # FLOPs and parameters: the two branches make the block (the residual adds cost nothing)
    for b in blocks:
        mine = [u for u in units if u.block_path == b.path]
        assert sum(u.flops for u in mine) == b.flops > 0
        assert sum(u.params for u in mine) == b.params
    assert units[0].flops > units[1].flops  # attention (qkv + proj + two matmuls) is dearer than a 2x MLP here


def test_wrapped_blocks_stay_whole_and_block_granularity_is_the_blocks():
    model = TinyCNN()
    units, blocks, _ = units_with_flops(model, SHAPE, None, "branch")
    assert units == blocks and find_branches(model, SHAPE, blocks) == {}
    timm_without = TimmViT(depth=2, drop_path_rate=0.0)   # timm puts nn.Identity where DropPath would be
    units, blocks, _ = units_with_flops(timm_without, SHAPE, None, "branch")
    assert units == blocks and [b.droppath for b in blocks] == ["wrapped", "wrapped"]
    vit = _vit()
    units, blocks, _ = units_with_flops(vit, SHAPE, None, "block")
    assert units == blocks


def test_granularity_is_checked():
    assert check_granularity("branch") == "branch" and check_granularity(None) is None
    with pytest.raises(CompressError, match="granularity.? must be one of block, branch") as e:
        check_granularity("layer")
    assert e.value.param == "granularity"


def test_branch_removal_takes_the_body_out_and_checks_itself():
    model, ref = _timm(), _timm()
    units, blocks, total = units_with_flops(model, SHAPE, None, "branch")
    params = count_params(model)
    remove_branch(model, units[2].removal())   # attention of block 1
    assert isinstance(model.blocks[1].ls1, ZeroBranch) and isinstance(model.blocks[1].norm1, paddle.nn.Identity)
    assert not any(k.startswith("blocks.1.attn.") or k.startswith("blocks.1.norm1.") for k in model.state_dict())
    assert count_params(model) == params - units[2].params
    assert count_flops(model, SHAPE)[0] == total - units[2].flops
    x = paddle.randn([4, *SHAPE])
    assert check_removal(ref, model, [units[2].removed_unit()], x).max_abs_diff <= 1e-5
    # the branch is no unit any more; its sibling is, with its DropPath call number kept
    left = find_branches(model, SHAPE, find_blocks(model, SHAPE))
    assert [(b.kind, b.call) for b in left[1]] == [("mlp", 1)]
    with pytest.raises(CompressError, match="surgery self-check failed: removing mlp at depth 1"):
        check_removal(ref, model, [units[3].removed_unit()], x)


def test_shared_layer_switches_off_only_its_call():
    """PaddleClas style: one drop_path layer called twice; the reference zeroes only the k-th call."""
    model, ref = _vit(), _vit()
    units, _, _ = units_with_flops(model, SHAPE, None, "branch")
    remove_branch(model, units[1].removal())   # the MLP of block 0
    x = paddle.randn([4, *SHAPE])
    assert check_removal(ref, model, [units[1].removed_unit()], x).max_abs_diff <= 1e-5
    with pytest.raises(CompressError):
        check_removal(ref, model, [units[0].removed_unit()], x)


def test_blocks_command_lists_branches():
    res = invoke("blocks", "--arch", "vit_tiny", "--json")
    assert res.exit_code == 0, res.output
    import json
    info = json.loads(res.stdout)
    assert len(info["branches"]) == 16 and info["branches"][1]["kind"] == "mlp"
    # numbered as units, the numbers `prune --granularity branch --blocks` takes
    assert [b["index"] for b in info["branches"]] == list(range(16))
    assert abs(sum(b["flops_share"] for b in info["branches"]) - sum(b["flops_share"] for b in info["blocks"])) < 1e-9
    res = invoke("blocks", "--arch", "vit_tiny")
    assert "blocks.7:mlp" in res.stdout and "norm2, mlp" in res.stdout


def test_refined_budget_trades_an_overshooting_large_unit():
    from compress.pruning.planning import budget_removal
    # three large units (attention) are cheapest per FLOP but fall short; the greedy's fourth large one overshoots
    flops, costs = [16, 8, 16, 8, 16, 8, 16, 8], [0.9, 0.82, 0.9, 0.82, 0.57, 0.58, 0.85, 0.82]
    plain = budget_removal(flops, costs, 104, 0.5)
    refined = budget_removal(flops, costs, 104, 0.5, refine=True)
    assert sum(flops[i] for i in plain) == 64                       # 4 x 16: 0.385 of the FLOPs stay
    assert 52 <= sum(flops[i] for i in refined) < 64                # within the budget, closer to it
    assert sum(costs[i] for i in refined) < sum(costs[i] for i in plain)
    assert budget_removal([40, 10, 10, 10], [0.6, 0.1, 0.1, 0.1], 100, 0.6, refine=True) == [0]
