import os
import pickle

import numpy as np
import paddle
import pytest

from compress.common.errors import CompressError
from compress.model.weights import apply_weights, load_weights, save_weights
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
