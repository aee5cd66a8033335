"""Fine-tuning from a foreign checkpoint (a plain state dict, no sidecar, another number of classes):
`compress train PRETRAINED --arch ... --data ...` through the CLI, and the library parts under it."""
import hashlib
import json
import shutil

import numpy as np
import paddle
import paddle.nn as nn
import pytest
from helpers import invoke, one_line_error

from compress.common.errors import CompressError
from compress.model.bundle import ArchSpec, build_model, class_kwarg_names
from compress.model.pretrained import find_classifier
from compress.model.sidecar import Sidecar, check_sidecar, read_sidecar
from compress.model.storage import read_model_files
from compress.model.weights import load_weights, save_weights

MOBILENET = ["--arch", "paddle.vision.models:mobilenet_v2", "--arch-kwargs", '{"scale": 0.25}',
             "--input-shape", "3,32,32"]
TINY = ["--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8"]
HEAD = ["classifier.1.weight", "classifier.1.bias"]


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def mobilenet_1000(tmp_path_factory):
    """A foreign 1000-class MobileNetV2 (scale 0.25, random weights) saved by paddle.save: no sidecar."""
    d = tmp_path_factory.mktemp("pre")
    paddle.seed(7)
    net = paddle.vision.models.mobilenet_v2(num_classes=1000, scale=0.25)
    for name, t in net.state_dict().items():  # BN statistics that are not the defaults, so a lost one would show
        if name.endswith(("_mean", "_variance")):
            t.set_value(paddle.rand(t.shape) + 0.5)
    paddle.save(net.state_dict(), str(d / "mobilenet.pdparams"))
    return d / "mobilenet.pdparams"


@pytest.mark.parametrize("fmt", ["pdparams", "safetensors"])
def test_foreign_checkpoint_loads_with_a_new_classifier_and_prunes(mobilenet_1000, tmp_path, fmt):
    pre = mobilenet_1000
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        pre = tmp_path / "mobilenet.safetensors"
        save_file({k: np.ascontiguousarray(v) for k, v in load_weights(mobilenet_1000).items()}, str(pre))
    out = tmp_path / "ft.pdparams"
    res = invoke("train", pre, *MOBILENET, "--epochs", 0, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    assert f"re-initialised the classifier for 10 classes: {', '.join(HEAD)}" in res.stderr
    summary = json.loads(res.stdout)
    assert summary["pretrained"] == {"path": str(pre.resolve()), "sha256": _sha(pre), "reinitialized": HEAD}
    sc = read_sidecar(out)
    assert sc.pretrained == summary["pretrained"] and sc.num_classes == 10 and sc.lineage == []
    assert sc.arch == {"spec": "paddle.vision.models:mobilenet_v2", "kwargs": {"scale": 0.25}}
    # every key but the classifier's is the checkpoint's, bit for bit (BN statistics included)
    src, got = load_weights(pre), read_model_files(out).state
    assert set(got) == set(src)
    assert all(np.array_equal(got[k], src[k]) for k in src if k not in HEAD)
    assert got["classifier.1.weight"].shape == (src["classifier.1.weight"].shape[0], 10)
    assert got["classifier.1.bias"].shape == (10,)
    # the result is an ordinary model: it prunes, and its sidecar keeps the pretrained source
    pruned = tmp_path / "ft.keep0.5.pdparams"
    res = invoke("prune", out, "--keep", 0.5, "--epochs", 0, "--criterion", "last", "--out", pruned)  # no statistics yet
    assert res.exit_code == 0, res.output
    psc = read_sidecar(pruned)
    assert psc.pretrained == sc.pretrained and len(psc.blocks) < len(sc.blocks)


def test_wrong_backbone_is_refused_with_the_keys(mobilenet_1000, tmp_path):
    out = tmp_path / "x.pdparams"
    state = load_weights(mobilenet_1000)
    bad = dict(state, **{"features.0.0.weight": np.zeros((9, 3, 3, 3), "float32")})
    save_weights(bad, tmp_path / "shape.pdparams")
    err = one_line_error(invoke("train", tmp_path / "shape.pdparams", *MOBILENET, "--out", out))
    assert "shape of features.0.0.weight [9, 3, 3, 3] vs [8, 3, 3, 3]" in err and "only the classifier" in err
    assert "classifier" not in err.split("shape of")[1].split("(")[0]  # the head is not among the refused keys
    # a whole other backbone (scale 0.5): every mis-shaped key is counted
    err = one_line_error(invoke("train", mobilenet_1000, "--arch", "paddle.vision.models:mobilenet_v2",
                                "--arch-kwargs", '{"scale": 0.5}', "--input-shape", "3,32,32", "--out", out))
    assert "weights do not match the architecture: shape of" in err and "keys)" in err
    # missing and unexpected keys
    extra = {k: v for k, v in state.items() if k != "features.1.conv.0.0.weight"}
    extra["features.99.weight"] = np.zeros(3, "float32")
    save_weights(extra, tmp_path / "keys.pdparams")
    err = one_line_error(invoke("train", tmp_path / "keys.pdparams", *MOBILENET, "--out", out))
    assert "missing 1 (features.1.conv.0.0.weight)" in err and "unexpected 1 (features.99.weight)" in err
    # the classifier missing altogether is not "only its shape differs"
    save_weights({k: v for k, v in state.items() if k not in HEAD}, tmp_path / "nohead.pdparams")
    err = one_line_error(invoke("train", tmp_path / "nohead.pdparams", *MOBILENET, "--out", out))
    assert "missing 2 (classifier.1.weight, classifier.1.bias)" in err
    # a class count set by hand that disagrees with the data; no --arch for a file without a sidecar
    err = one_line_error(invoke("train", mobilenet_1000, "--arch", "paddle.vision.models:mobilenet_v2",
                                "--arch-kwargs", '{"scale": 0.25, "num_classes": 1000}', "--input-shape", "3,32,32",
                                "--out", out))
    assert "--arch-kwargs sets num_classes 1000 but the data has 10 classes" in err
    err = one_line_error(invoke("train", mobilenet_1000, "--out", out))
    assert "no sidecar next to it" in err and "--arch" in err
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


@pytest.fixture(scope="module")
def tiny_foreign(tmp_path_factory):
    """A TinyCNN trained 3 epochs on the digits, its sidecar dropped and its head replaced by a random
    1000-class one: a pretrained checkpoint with useful features and a foreign head."""
    d = tmp_path_factory.mktemp("tiny")
    res = invoke("train", *TINY, "--epochs", 3, "--lr", 0.01, "--out", d / "base.pdparams")
    assert res.exit_code == 0, res.output
    state = load_weights(d / "base.pdparams")
    rng = np.random.default_rng(0)
    state["head.weight"] = rng.normal(0, 0.05, (16, 1000)).astype("float32")
    state["head.bias"] = np.zeros(1000, "float32")
    save_weights(state, d / "foreign.pdparams")
    return d / "foreign.pdparams"


def test_pretrained_features_help_fine_tuning(tiny_foreign, tmp_path):
    """One epoch from the pretrained features beats one epoch from scratch (same seed): the weights were used."""
    acc = {}
    for name, init in (("pre", [tiny_foreign]), ("scratch", [])):
        res = invoke("train", *init, *TINY, "--epochs", 1, "--lr", 0.01, "--seed", 1, "--out",
                     tmp_path / f"{name}.pdparams", "--json")
        assert res.exit_code == 0, res.output
        acc[name] = json.loads(res.stdout)["test_accuracy"]
    assert acc["pre"] > acc["scratch"] + 0.1, acc
    assert read_sidecar(tmp_path / "pre.pdparams").pretrained["reinitialized"] == ["head.weight", "head.bias"]


def test_same_classes_and_wrapper_prefix(tiny_foreign, tmp_path):
    """A checkpoint whose head already fits re-initialises nothing; keys under a wrapper's `model.` prefix load."""
    state = load_weights(tiny_foreign)
    state["head.weight"], state["head.bias"] = state["head.weight"][:, :10], state["head.bias"][:10]
    save_weights({f"model.{k}": v for k, v in state.items()}, tmp_path / "wrapped.safetensors")
    res = invoke("train", tmp_path / "wrapped.safetensors", *TINY, "--epochs", 0, "--out", tmp_path / "m.pdparams")
    assert res.exit_code == 0, res.output
    assert "took the prefix 'model.' off every key" in res.stderr and "nothing re-initialised" in res.stderr
    pre = read_sidecar(tmp_path / "m.pdparams").pretrained
    assert pre["reinitialized"] == [] and pre["stripped_prefix"] == "model."
    got = read_model_files(tmp_path / "m.pdparams").state
    assert all(np.array_equal(got[k], state[k]) for k in state)


class ConvHead(nn.Layer):
    """SqueezeNet-style: the logits come from a 1x1 convolution, then pooling and flattening."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2D(3, 8, 3, padding=1), nn.ReLU())
        self.final_conv = nn.Conv2D(8, num_classes, 1)
        self.pool = nn.AdaptiveAvgPool2D(1)

    def forward(self, x):
        return self.pool(self.final_conv(self.body(x))).flatten(1)


class Embedder(nn.Layer):
    """Its last Linear gives features, not as many logits as classes: no classifier to re-initialise."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 16)

    def forward(self, x):
        return paddle.tanh(self.fc(x.flatten(1)))


def test_find_classifier_by_probing():
    assert find_classifier(build_model(ArchSpec("resnet_tiny"), (1, 8, 8), 10), (1, 8, 8), 10) == "head"
    mb = build_model(ArchSpec("paddle.vision.models:mobilenet_v2", {"scale": 0.25}), (3, 32, 32), 7)
    assert find_classifier(mb, (3, 32, 32), 7) == "classifier.1"
    assert find_classifier(ConvHead(5), (3, 8, 8), 5) == "final_conv"
    assert find_classifier(Embedder(), (3, 2, 2), 16) == "fc"
    assert find_classifier(Embedder(), (3, 2, 2), 10) is None


def paddleclas_style(class_num=1000, **kwargs):  # PaddleClas names the class count class_num
    return ConvHead(class_num)


def forwards_kwargs(**kwargs):  # a factory that passes **kwargs on to a class without a class count
    return Embedder(**kwargs)


def test_class_count_filled_in_from_the_signature():
    assert class_kwarg_names(paddleclas_style) == ["class_num"]
    assert class_kwarg_names(paddle.vision.models.resnet18) == ["num_classes", "class_num"]
    assert class_kwarg_names(Embedder) == []
    here = "test_pretrained"
    assert find_classifier(build_model(ArchSpec(f"{here}:paddleclas_style"), (3, 8, 8), 3), (3, 8, 8), 3)
    assert isinstance(build_model(ArchSpec(f"{here}:forwards_kwargs"), (3, 2, 2), 3), Embedder)  # tried, then left out
    with pytest.raises(CompressError, match="cannot build"):
        build_model(ArchSpec(f"{here}:forwards_kwargs", {"bogus": 1}), (3, 2, 2), 3)


def test_sidecar_pretrained_field_is_type_checked():
    good = {"path": "/x/p.pdparams", "sha256": "a" * 64, "reinitialized": ["head.weight"]}
    check_sidecar(Sidecar.from_json({"pretrained": good}), "m.compress.json")
    for bad in ({"path": "/x", "sha256": "short"}, {"sha256": "a" * 64}, "p.pdparams",
                {**good, "reinitialized": [1]}):
        with pytest.raises(CompressError, match="pretrained must be an object"):
            check_sidecar(Sidecar.from_json({"pretrained": bad}), "m.compress.json")


@pytest.mark.slow
def test_resnet18_1000_classes_on_a_3_class_photo_folder_at_224(tmp_path):
    """The issue's done-when, as the README's walk-through runs it: a 1000-class ResNet-18 checkpoint
    (random weights: no downloads here) fine-tuned with DropPath on a 3-class JPEG folder at 224x224,
    then pruned with healing and exported, each step verified by the command itself, then reported."""
    from compress.data.shapes import make_folder

    make_folder(tmp_path / "photos", count=100, size=256)
    for split in ("train", "val", "test"):
        for cls in sorted((tmp_path / "photos" / split).iterdir())[3:]:
            shutil.rmtree(cls)
    paddle.seed(3)
    paddle.save(paddle.vision.models.resnet18(num_classes=1000).state_dict(), str(tmp_path / "r18.pdparams"))
    out = tmp_path / "ft.pdparams"
    res = invoke("train", tmp_path / "r18.pdparams", "--arch", "paddle.vision.models:resnet18", "--input-shape",
                 "3,224,224", "--data", tmp_path / "photos", "--normalize", "imagenet", "--augment", "standard",
                 "--drop-path-rate", 0.1, "--epochs", 1, "--batch-size", 8, "--out", out)
    assert res.exit_code == 0, res.output
    assert "re-initialised the classifier for 3 classes: fc.weight, fc.bias" in res.stderr
    side = read_sidecar(out)
    assert side.num_classes == 3 and side.input_shape == [3, 224, 224] and side.preprocess["normalize"] == "imagenet"
    assert len(side.statistics) == len(side.blocks) == 5        # survival statistics for every residual block
    pruned = tmp_path / "ft.keep0.6.pdparams"
    res = invoke("prune", out, "--keep", 0.6, "--epochs", 1, "--batch-size", 8, "--out", pruned,
                 "--export", tmp_path / "exp")
    assert res.exit_code == 0, res.output
    exported = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert exported["files"] and exported["input"]["preprocess"] == side.preprocess
    assert read_sidecar(pruned).pretrained["sha256"] == _sha(tmp_path / "r18.pdparams")
    assert len(read_sidecar(pruned).blocks) == 3
    res = invoke("report", out, pruned, "--out", tmp_path / "rep", "--runs", 5, "--warmup", 10, "--seconds", 0,
                 "--batch", "1", "--json")
    assert res.exit_code == 0, res.output
    assert {m["name"] for m in json.loads(res.stdout)["models"]} == {"ft", "ft.keep0.6"}
