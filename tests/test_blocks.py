
from compress.blocks import find_blocks
from compress.architectures import ARCHITECTURES
from compress.models import ArchSpec, build_model
from compress.workflows.inspect import describe_blocks
from tiny_models import TinyCNN, TinyTransformer


def test_cnn_blocks_exclude_stem_and_downsampling():
    blocks = find_blocks(TinyCNN(), (1, 8, 8))
    assert [b.path for b in blocks] == ["stages.0.0", "stages.0.1", "stages.1.1", "stages.1.2"]
    assert all(b.droppath == "wrapped" for b in blocks)
    assert blocks[0].params == 8 * 8 * 9 + 8 + 4 * 8   # conv w+b, bn (weight, bias, mean, var)


def test_transformer_nested_layerlists():
    blocks = find_blocks(TinyTransformer(), (1, 8, 8))
    assert [b.path for b in blocks] == ["groups.0.0", "groups.0.1", "groups.1.0", "groups.1.1"]


def test_innermost_blocks_win_over_shape_preserving_containers():
    # stage 0 of TinyCNN is itself shape-preserving; its two blocks are listed, not the stage
    paths = [b.path for b in find_blocks(TinyCNN(), (1, 8, 8))]
    assert "stages.0" not in paths


def test_own_droppath_detected_on_vit():
    model = build_model(ArchSpec("vit_tiny", {"depth": 3, "dim": 16, "heads": 2}), (1, 16, 16), 10)
    blocks = find_blocks(model, (1, 16, 16))
    assert len(blocks) == 3 and all(b.own_droppath == ["drop_path"] for b in blocks)


def test_shipped_architectures_have_8_blocks():
    for name, (factory, shape) in ARCHITECTURES.items():
        info = describe_blocks(arch=name, num_classes=10)
        assert len(info["blocks"]) >= 8, name
        assert abs(sum(b["flops_share"] for b in info["blocks"]) - 1) < 0.1
        assert info["flops"] > 0 and info["params"] > 0
