import os
import pickle

import numpy as np
import paddle
import pytest

from compress.errors import CompressError
from compress.loading import (ArchSpec, apply_weights, build_model, load_model, load_weights, parse_kwargs,
                              resolve_arch, save_model, save_weights)
from tiny_models import TinyCNN


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pdparams"
    bad.write_bytes(pickle.dumps({"w": _Evil(marker)}, protocol=4))
    # sanity: the file really is malicious under an ordinary unpickler
    with pytest.raises(CompressError, match="refusing to load"):
        load_weights(bad)
    assert not marker.exists()
    pickle.loads(bad.read_bytes())
    assert marker.exists()


def test_roundtrip_pdparams_is_paddle_compatible_and_safetensors(tmp_path):
    model = TinyCNN()
    state = model.state_dict()
    for name in ("w.pdparams", "w.safetensors"):
        save_weights(state, tmp_path / name)
        back = load_weights(tmp_path / name)
        assert set(back) == set(state)
        for k in state:
            np.testing.assert_array_equal(back[k], state[k].numpy())
    # weights written by paddle.save load through the safe loader too
    paddle.save(state, str(tmp_path / "p.pdparams"))
    assert set(load_weights(tmp_path / "p.pdparams")) == set(state)
    # and ours load with paddle.load
    assert set(paddle.load(str(tmp_path / "w.pdparams"))) == set(state)


@pytest.mark.parametrize("content,msg", [(b"", "empty"), (b"hello world", "not a weights file"),
                                         (pickle.dumps([1, 2]), "not a weights file")])
def test_not_weights(tmp_path, content, msg):
    p = tmp_path / "x.pdparams"
    p.write_bytes(content)
    with pytest.raises(CompressError, match=msg):
        load_weights(p)


def test_truncated(tmp_path):
    p = tmp_path / "t.pdparams"
    save_weights(TinyCNN().state_dict(), p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(CompressError, match="truncated"):
        load_weights(p)


def test_mismatched_weights_name_keys():
    model = TinyCNN()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    state.pop("head.weight")
    state["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CompressError, match=r"missing 1 \(head.weight\); unexpected 1 \(extra.weight\)"):
        apply_weights(model, state, "x")


def test_arch_specs(tmp_path, monkeypatch):
    assert resolve_arch("vit_tiny") is not None
    assert resolve_arch("tiny_models:TinyCNN") is TinyCNN
    f = tmp_path / "m.py"
    f.write_text("import paddle\nclass M(paddle.nn.Layer):\n    def __init__(self):\n        super().__init__()\n"
                 "        self.l = paddle.nn.Linear(2, 2)\n    def forward(self, x):\n        return self.l(x)\n")
    assert resolve_arch(f"{f}:M").__name__ == "M"
    with pytest.raises(CompressError, match="unknown architecture"):
        resolve_arch("nope")
    with pytest.raises(CompressError, match="cannot import"):
        resolve_arch("no_such_module_xyz:Thing")
    with pytest.raises(CompressError, match="not valid JSON"):
        parse_kwargs("{bad")


def test_save_and_load_model_roundtrip(tmp_path):
    model = build_model(ArchSpec("tiny_models:TinyCNN", {"width": 4}), (1, 8, 8), 10)
    path = save_model(model, tmp_path / "m.pdparams",
                      {"arch": {"spec": "tiny_models:TinyCNN", "kwargs": {"width": 4}}, "input_shape": [1, 8, 8],
                       "num_classes": 10})
    b = load_model(path)
    x = paddle.randn([2, 1, 8, 8])
    model.eval()
    np.testing.assert_allclose(b.model(x).numpy(), model(x).numpy(), atol=1e-6)
    assert b.input_shape == (1, 8, 8) and b.num_classes == 10
    assert not list(tmp_path.glob("*.tmp"))
