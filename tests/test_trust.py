"""Which architecture a sidecar may name (compress.model.trust), both sides of the rule, through the library and the CLI."""
import json
import os
import shutil

import pytest
from helpers import invoke, one_line_error
from tiny_models import TinyCNN

from compress.model import trust
from compress.common.errors import CompressError
from compress.model.bundle import resolve_arch
from compress.model.sidecar import sidecar_path


@pytest.fixture(autouse=True)
def fresh_trust(monkeypatch, tmp_path):
    """An empty trusted list per test; `--trust-arch` sets COMPRESS_TRUST_ARCH in this process: never let it
    leak from one test to the next."""
    monkeypatch.setenv(trust.CONFIG_ENV, str(tmp_path / "config"))
    monkeypatch.delenv(trust.TRUST_ENV, raising=False)
    yield
    os.environ.pop(trust.TRUST_ENV, None)


def copy_model(src, dst_dir, arch=None):
    """A copy of a model whose sidecar names ``arch`` (a dict) instead of its own."""
    dst = dst_dir / src.name
    shutil.copy2(src, dst)
    sc = json.loads(sidecar_path(src).read_text())
    if arch is not None:
        sc["arch"] = arch
    sidecar_path(dst).write_text(json.dumps(sc))
    return dst


def test_sidecar_may_name_shipped_zoo_and_installed_layer_classes():
    assert resolve_arch("resnet_tiny", trusted=False) is not None
    assert resolve_arch("tiny_models:TinyCNN", trusted=False) is TinyCNN
    assert resolve_arch("paddle.vision.models:resnet18", trusted=False).__name__ == "resnet18"
    assert resolve_arch("paddle.nn:Linear", trusted=False).__name__ == "Linear"


@pytest.mark.parametrize("spec", ["subprocess:getoutput", "os:system", "builtins:eval", "builtins:exec",
                                  "tiny_models:tiny_cnn", "paddle.vision.models.resnet:get_weights_path_from_url"])
def test_sidecar_may_not_name_functions_or_stdlib(spec):
    with pytest.raises(CompressError, match="--trust-arch"):
        resolve_arch(spec, trusted=False)


def test_module_in_working_or_model_directory_is_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "sidefx.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                        "import paddle\nclass M(paddle.nn.Layer):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CompressError, match="not installed"):  # next to the model
        resolve_arch("sidefx:M", trusted=False, near=tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CompressError, match="not installed"):  # in the working directory (python -m puts it on sys.path)
        resolve_arch("sidefx:M", trusted=False)
    assert not marker.exists()
    monkeypatch.setenv(trust.TRUST_ENV, "1")  # the user's explicit opt-in
    assert resolve_arch("sidefx:M", trusted=False).__name__ == "M" and marker.exists()


@pytest.mark.parametrize("arch", [
    {"spec": "os:system", "kwargs": {"command": "touch {marker}"}},
    {"spec": "subprocess:getoutput", "kwargs": {"cmd": "touch {marker}"}},
    {"spec": "builtins:eval", "kwargs": {"source": "open({marker!r}, 'w')"}},
    {"spec": "builtins:exec", "kwargs": {"source": "open({marker!r}, 'w')"}},
])
def test_crafted_sidecar_runs_nothing(tiny_model, tmp_path, arch):
    marker = tmp_path / "ran"
    arch = {"spec": arch["spec"], "kwargs": {k: v.format(marker=str(marker)) for k, v in arch["kwargs"].items()}}
    model = copy_model(tiny_model, tmp_path, arch)
    for args in (["prune", model, "--keep", 0.5, "--epochs", 0, "--out", tmp_path / "p.pdparams"],
                 ["export", model, "--out", tmp_path / "e"], ["blocks", model],
                 ["report", model, "--out", tmp_path / "r"]):
        err = one_line_error(invoke(*args))
        assert arch["spec"] in err and "--trust-arch" in err
    assert not marker.exists()
    assert not (tmp_path / "p.pdparams").exists() and not (tmp_path / "e").exists()


def test_user_named_file_is_remembered_until_it_changes(tmp_path):
    net = tmp_path / "net.py"
    net.write_text("from tiny_models import TinyCNN\n\ndef build(**kw):\n    return TinyCNN(**kw)\n")
    out = tmp_path / "m.pdparams"
    res = invoke("train", "--arch", f"{net}:build", "--input-shape", "1,8,8", "--epochs", 0, "--out", out)
    assert res.exit_code == 0, res.output
    assert json.loads(sidecar_path(out).read_text())["arch"]["spec"] == f"{net.resolve()}:build"
    res = invoke("prune", out, "--keep", 0.5, "--epochs", 0, "--criterion", "last", "--out", tmp_path / "p.pdparams")
    assert res.exit_code == 0, res.output  # named by the user once: no flag needed later
    net.write_text(net.read_text() + "# edited\n")
    err = one_line_error(invoke("prune", out, "--keep", 0.5, "--epochs", 0, "--criterion", "last", "--out", tmp_path / "q.pdparams"))
    assert "changed since you trusted it" in err
    res = invoke("--trust-arch", "prune", out, "--keep", 0.5, "--epochs", 0, "--criterion", "last", "--out", tmp_path / "q.pdparams")
    assert res.exit_code == 0, res.output
    os.environ.pop(trust.TRUST_ENV, None)
    res = invoke("blocks", out)  # the new content is remembered now
    assert res.exit_code == 0, res.output


def test_trust_flag_is_remembered(tmp_path):
    out = tmp_path / "m.pdparams"
    assert invoke("train", "--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8", "--epochs", 0, "--out", out).exit_code == 0
    sc = json.loads(sidecar_path(out).read_text())
    sc["arch"]["spec"] = "tiny_models:tiny_cnn"  # the same network from a factory function, not a Layer class
    sidecar_path(out).write_text(json.dumps(sc))
    assert "--trust-arch" in one_line_error(invoke("blocks", out))  # needs the user's word once
    res = invoke("--trust-arch", "blocks", out)
    assert res.exit_code == 0, res.output
    os.environ.pop(trust.TRUST_ENV, None)
    assert trust.remembered("tiny_models:tiny_cnn") is None
    res = invoke("blocks", out)
    assert res.exit_code == 0, res.output


@pytest.mark.slow  # over 25 s on 2 cores; the full suite runs it
def test_paddle_zoo_model_prunes_exports_and_reports_without_flag(tmp_path):
    out = tmp_path / "r18.pdparams"
    res = invoke("train", "--arch", "paddle.vision.models:resnet18", "--arch-kwargs", '{"num_classes": 10}',
                 "--input-shape", "3,32,32", "--epochs", 0, "--out", out)
    assert res.exit_code == 0, res.output
    assert trust.remembered("paddle.vision.models:resnet18") is not None  # allowed by the rule, not by the list
    res = invoke("prune", out, "--keep", 0.5, "--epochs", 0, "--criterion", "every-other", "--out", tmp_path / "p.pdparams")
    assert res.exit_code == 0, res.output
    res = invoke("export", tmp_path / "p.pdparams", "--out", tmp_path / "e")
    assert res.exit_code == 0, res.output
    res = invoke("report", out, tmp_path / "p.pdparams", "--out", tmp_path / "rep", "--batch", 1, "--runs", 10,
                 "--seconds", 1, "--json")
    assert res.exit_code == 0, res.output
    assert {r["model"] for r in json.loads(res.stdout)["rows"]} == {"r18", "p"}


def test_pretrained_download_refused(tmp_path):
    err = one_line_error(invoke("train", "--arch", "paddle.vision.models:resnet18", "--arch-kwargs",
                                '{"pretrained": true}', "--input-shape", "3,32,32", "--epochs", 0,
                                "--out", tmp_path / "m.pdparams"))
    assert "download" in err
