"""Exports are verified before use: `report` and `sweep` check every file against export.json (sizes, sha256)
and export.json's source against the model, and never time a file that is not the named model."""
import json
import shutil
from pathlib import Path

import pytest
from helpers import invoke, one_line_error
from tiny_files import write_tiny

import compress.workflows.report as report_workflow
from compress.export import export_model
from compress.common.fileio import sha256
from compress.measure.latency import measure_latency
from compress.export.verify import check_export, verify_export

FAST = ["--runs", 3, "--warmup", 10, "--seconds", 0, "--batch", 1]
TIMED = ("model.onnx", "paddle/model.json", "paddle/model.pdiparams")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two different tiny models and an export of each."""
    d = tmp_path_factory.mktemp("verify")
    out = {}
    for name, width in (("a", 4), ("b", 8)):
        m = write_tiny(d / f"{name}.pdparams", width=width, seed=width)
        export_model(m, d / f"{name}_export")
        out[name] = (m, d / f"{name}_export")
    return out


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _hashes(export_dir):
    return {f: sha256(export_dir / f) for f in TIMED}


def test_a_faithful_export_verifies(models):
    m, exp = models["a"]
    assert verify_export(exp, m) == []
    check_export(exp, m)


def test_every_kind_of_tampering_is_found(models, tmp_path):
    (a, a_exp), (b, b_exp) = models["a"], models["b"]
    swapped = _copy(a_exp, tmp_path / "swapped")
    shutil.copy2(b_exp / "model.onnx", swapped / "model.onnx")
    assert any("model.onnx" in p and "sha256" in p for p in verify_export(swapped, a))
    same_size = _copy(a_exp, tmp_path / "same_size")
    data = bytearray((same_size / "paddle" / "model.pdiparams").read_bytes())
    data[-1] ^= 1
    (same_size / "paddle" / "model.pdiparams").write_bytes(bytes(data))
    assert any("paddle/model.pdiparams" in p for p in verify_export(same_size, a))
    missing = _copy(a_exp, tmp_path / "missing")
    (missing / "paddle" / "model.json").unlink()
    assert any("paddle/model.json" in p and "missing" in p for p in verify_export(missing, a))
    assert any("another model" in p for p in verify_export(a_exp, b))       # export.json names other weights
    broken = _copy(a_exp, tmp_path / "broken")
    (broken / "export.json").write_text("{not json")
    assert verify_export(broken, a)
    unlisted = _copy(a_exp, tmp_path / "unlisted")
    info = json.loads((unlisted / "export.json").read_text())
    del info["files"]["model.onnx"]
    (unlisted / "export.json").write_text(json.dumps(info))
    assert any("model.onnx" in p for p in verify_export(unlisted, a))
    with pytest.raises(Exception, match="sha256"):
        check_export(swapped, a)


def test_report_never_times_a_tampered_export(models, tmp_path, monkeypatch):
    """Replace a cached export's model.onnx and paddle/* with another model's valid files: report must
    re-export (or refuse), not time them under the old name."""
    (a, _), (_, b_exp) = models["a"], models["b"]
    rep = tmp_path / "rep"
    assert invoke("report", a, "--out", rep, *FAST).exit_code == 0
    cached = rep / "exports" / "a"
    for f in TIMED:
        shutil.copy2(b_exp / f, cached / f)
    assert _hashes(cached) == _hashes(b_exp)
    timed = []

    def measure(targets, progress=None, **kw):  # time in this process; record what is timed
        timed.extend(_hashes(Path(t[2])) for t in targets)
        return measure_latency(targets, **kw)
    monkeypatch.setattr(report_workflow, "measure_latency_isolated", measure)
    res = invoke("report", a, "--out", rep, *FAST)
    if res.exit_code == 0:  # exported again: what was timed is a's new export, verified
        assert "again" in res.stderr and "model.onnx" in res.stderr
        assert timed and all(h == _hashes(cached) for h in timed) and _hashes(cached) != _hashes(b_exp)
        assert verify_export(cached, a) == []
    else:
        assert "sha256" in one_line_error(res) and not timed


def test_an_export_changed_after_verification_is_not_timed(models, tmp_path, monkeypatch):
    (a, _), (_, b_exp) = models["a"], models["b"]
    rep = tmp_path / "rep"
    real = report_workflow.ensure_export

    def ensure_then_tamper(model_path, export_dir, options=None, progress=None):
        info = real(model_path, export_dir, options, progress=progress)
        shutil.copy2(b_exp / "model.onnx", export_dir / "model.onnx")  # swapped after the check
        return info
    monkeypatch.setattr(report_workflow, "ensure_export", ensure_then_tamper)
    monkeypatch.setattr(report_workflow, "measure_latency_isolated", lambda *a, **k: pytest.fail("timed"))
    err = one_line_error(invoke("report", a, "--out", rep, *FAST))
    assert "model.onnx" in err and "sha256" in err
