import numpy as np
import paddle
import pytest

from compress.common.errors import CompressError
from compress.model.bundle import ArchSpec, build_model, load_model, parse_kwargs, resolve_arch, save_model
from tiny_models import TinyCNN


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


def test_a_model_file_imports_its_sibling_modules(tmp_path):
    """`file.py:callable` imports as the file would run: modules next to it (a zoo's `droppath.py`) are found."""
    (tmp_path / "sibling_layers_xyz.py").write_text("import paddle\nclass Lin(paddle.nn.Linear):\n    pass\n")
    f = tmp_path / "net.py"
    f.write_text("import paddle\nfrom sibling_layers_xyz import Lin\nclass Net(paddle.nn.Layer):\n"
                 "    def __init__(self, num_classes=3):\n        super().__init__()\n        self.l = Lin(4, num_classes)\n"
                 "    def forward(self, x):\n        return self.l(x.flatten(1))\n")
    import sys

    model = build_model(ArchSpec(f"{f}:Net"), (1, 2, 2), num_classes=3)
    assert type(model.l).__name__ == "Lin" and str(tmp_path) not in sys.path
