import numpy as np
import paddle
import pytest

from compress.graph.blocks import find_blocks
from compress.common.errors import CompressError
from compress.graph.flops import count_flops
from compress.common.layers import count_params
from compress.graph.surgery import RemovedUnit, check_removal, remove_blocks, removal_diff, switched_off
from tiny_models import TinyCNN, TinyTransformer


def test_removed_blocks_are_gone_not_masked():
    model = TinyCNN()
    model.eval()
    before_params, (before_flops, per) = count_params(model), count_flops(model, (1, 8, 8), find_blocks(model, (1, 8, 8)))
    blocks = find_blocks(model, (1, 8, 8))
    remove_blocks(model, ["stages.0.1", "stages.1.2"])
    assert isinstance(model.stages[0][1], paddle.nn.Identity)
    assert not any(k.startswith("stages.0.1.") or k.startswith("stages.1.2.") for k in model.state_dict())
    assert count_params(model) == before_params - blocks[1].params - blocks[3].params
    after_flops, _ = count_flops(model, (1, 8, 8))
    assert after_flops == before_flops - per["stages.0.1"] - per["stages.1.2"]
    assert [b.path for b in find_blocks(model, (1, 8, 8))] == ["stages.0.0", "stages.1.1"]


def test_removal_equals_skipping_the_block():
    model = TinyTransformer()
    model.eval()
    x = paddle.randn([3, 1, 8, 8])
    with paddle.no_grad():
        h = model.embed(x).flatten(2).transpose([0, 2, 1])
        for name, b in [("0.0", model.groups[0][0]), ("1.0", model.groups[1][0]), ("1.1", model.groups[1][1])]:
            h = b(h)
        expected = model.head(h.mean(axis=1)).numpy()
    remove_blocks(model, ["groups.0.1"])
    np.testing.assert_allclose(model(x).numpy(), expected, atol=1e-5)


# --------------------------------------------------------------------------- the self-check


def _twin(model_cls, **kw):
    """Two instances of ``model_cls`` with the same weights, in eval mode."""
    a, b = model_cls(**kw), model_cls(**kw)
    b.set_state_dict(a.state_dict())
    a.eval()
    b.eval()
    return a, b


def test_self_check_of_a_real_removal_is_exact():
    ref, pruned = _twin(TinyCNN)
    remove_blocks(pruned, ["stages.0.1", "stages.1.2"])
    x = paddle.randn([5, 1, 8, 8])
    check = check_removal(ref, pruned, [RemovedUnit.of_block("stages.0.1", index=1), RemovedUnit.of_block("stages.1.2", index=3)], x)
    assert check.max_abs_diff <= 1e-5 and check.images == 5 and check.tolerance == 1e-5
    # the reference is the model with the blocks switched off, not the pruned one: it differs from the full model
    assert removal_diff(ref, ref, [], x) == 0.0
    with switched_off(ref, [RemovedUnit.of_block("stages.0.1")]):
        off = ref(x).numpy()
    assert np.abs(off - ref(x).numpy()).max() > 1e-4          # switched off, then put back


def test_switched_off_zeroes_a_blocks_own_droppath():
    from zoo_models import DeiT

    ref, pruned = _twin(DeiT, img=16, patch=4, dim=16, depth=3, heads=2, in_chans=1)
    own = find_blocks(ref, (1, 16, 16))[1].own_droppath
    assert own  # the block drives its branches through its own DropPath layers
    remove_blocks(pruned, ["blocks.1"])
    x = paddle.randn([3, 1, 16, 16])
    assert check_removal(ref, pruned, [RemovedUnit.of_block("blocks.1", tuple(own), 1)], x).max_abs_diff <= 1e-5
    assert type(ref.blocks[1].drop_path).__name__ == "DropPath"   # put back


def test_self_check_names_a_block_whose_body_feeds_something_else():
    from tiny_models import SideHeadCNN

    ref, pruned = _twin(SideHeadCNN)
    remove_blocks(pruned, ["blocks.0", "blocks.1"])
    x = paddle.randn([4, 1, 8, 8])

    def rebuild():
        m = SideHeadCNN()
        m.set_state_dict(ref.state_dict())
        m.eval()
        return m
    with pytest.raises(CompressError) as e:
        check_removal(ref, pruned, [RemovedUnit.of_block("blocks.0", index=0), RemovedUnit.of_block("blocks.1", index=1)], x, rebuild=rebuild)
    assert e.value.exit_code == 3
    msg = str(e.value)
    assert "block 1 (blocks.1)" in msg and "blocks.0" not in msg and "4 images" in msg


def test_flops_are_attributed_per_block_in_a_transformer():
    from zoo_models import DeiT

    model = DeiT(img=16, patch=4, dim=16, depth=3, heads=2, in_chans=1)
    blocks = find_blocks(model, (1, 16, 16))
    total, per = count_flops(model, (1, 16, 16), blocks)
    assert all(per[b.path] > 0 for b in blocks) and sum(per.values()) < total
    remove_blocks(model, ["blocks.0", "blocks.2"])
    assert count_flops(model, (1, 16, 16))[0] == total - per["blocks.0"] - per["blocks.2"]


# records of removed units as plans wrote them before the unit's granularity was recorded
OLD_BLOCK = {"index": 2, "path": "stages.0.2", "params": 10, "flops": 100, "own_droppath": []}
OLD_BRANCH = {"index": 5, "path": "blocks.2:mlp", "params": 4, "flops": 40, "own_droppath": ["drop_path"],
              "block_path": "blocks.2", "depth": 2, "call": 1, "kind": "mlp", "label": "mlp at depth 2",
              "record": {"block": "blocks.2", "call": 1, "kind": "mlp", "depth": 2, "body": ["norm2", "mlp"],
                         "shape": [4, 16]}}


@pytest.mark.parametrize("record,granularity,layer", [(OLD_BLOCK, "block", "stages.0.2"),
                                                      (OLD_BRANCH, "branch", "blocks.2")], ids=["block", "branch"])
def test_removed_unit_reads_old_plan_records_and_writes_them_back(record, granularity, layer):
    u = RemovedUnit.from_json(record)
    assert (u.granularity, u.layer_path, u.to_json()) == (granularity, layer, record)
    assert u.name == ("mlp at depth 2" if u.is_branch else "block 2")


def test_a_branch_without_its_block_or_removal_record_is_refused():
    with pytest.raises(ValueError, match="block_path, call and removal record"):
        RemovedUnit("branch", "blocks.2:mlp", 5)
    with pytest.raises(ValueError, match="block or a branch"):
        RemovedUnit("layer", "x")


def test_a_plan_reads_back_from_its_json():
    from compress.workflows.prune import PrunePlan
    plan = PrunePlan(blocks_before=4, blocks_after=2, keep=0.5, criterion="survival", seed=0, remove=[2, 5],
                     remove_paths=["stages.0.2"], params_before=20, params_after=6, flops_before=200, flops_after=60,
                     removed=[RemovedUnit.from_json(OLD_BLOCK), RemovedUnit.from_json(OLD_BRANCH)],
                     granularity="branch", remove_branches=[OLD_BRANCH["record"]])
    data = plan.to_json()
    assert data["removed"] == [OLD_BLOCK, OLD_BRANCH] and data["flops_ratio"] == 0.3
    assert PrunePlan.from_json(data) == plan
