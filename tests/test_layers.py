"""compress.common.layers: paths resolved by registered names (dots allowed), layers replaced wherever the model holds
them (plain lists, tuples, dicts, a second name), and put back."""
from __future__ import annotations

import paddle.nn as nn
import pytest

from compress.common.layers import get_sublayer, replace_layer, resolve_path, restore_layers, set_sublayer


class Holder(nn.Layer):
    def __init__(self):
        super().__init__()
        self.a = self.add_sublayer("blk.0.", nn.Linear(2, 2))       # a name with dots
        self.b = self.add_sublayer("blk", nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))
        self.in_list = [self.a, [self.b[1]]]
        self.in_tuple = (self.a, 3, (4, self.a))
        self.in_dict = {"first": self.a}


def test_paths_resolve_by_registered_names():
    m = Holder()
    names = [p for p, _ in m.named_sublayers()]
    assert "blk.0." in names and "blk.1" in names
    assert get_sublayer(m, "blk.0.") is m.a                     # not blk -> 0 -> ""
    assert get_sublayer(m, "blk.1") is m.b[1]
    assert resolve_path(m, "blk.0.") == (m, "blk.0.")
    assert resolve_path(m, "blk.7") is None
    with pytest.raises((AttributeError, IndexError)):
        get_sublayer(m, "blk.7")


def test_replace_layer_everywhere_and_restore():
    m = Holder()
    old, new = m.a, nn.Identity()
    undo = replace_layer(m, "blk.0.", new)
    assert m._sub_layers["blk.0."] is new
    assert m.in_list[0] is new and m.in_tuple == (new, 3, (4, new)) and m.in_dict["first"] is new
    restore_layers(undo)
    assert m._sub_layers["blk.0."] is old and m.in_list[0] is old and m.in_tuple == (old, 3, (4, old))
    assert m.in_dict["first"] is old
    inner = m.b[1]
    set_sublayer(m, "blk.1", nn.Identity())                   # nested list too
    assert isinstance(m.in_list[1][0], nn.Identity) and m.b[1] is m.in_list[1][0] and m.b[1] is not inner
