"""Files are identified by resolved path, not by name: no output may overwrite an input (its weights, its
sidecar, its data) or another output, whether named through `..`, a symlink or another weights suffix."""
import os

import pytest
from helpers import invoke, one_line_error
from tiny_files import hidden, snapshot, write_tiny

from compress.common.errors import CompressError
from compress.model.bundle import load_model
from compress.model.paths import Output, check_outputs, model_inputs, model_outputs, same_file


@pytest.fixture()
def model(tmp_path):
    """A tiny model with survival statistics (so `stats` and the default criterion work)."""
    stats = [{"block": b, "samples_seen": 10, "samples_kept": k, "survival_rate": k / 10, "loss_kept": 1.0,
              "loss_dropped": 2.0, "importance": 1.0, "importance_stderr": 0.1, "residual_ratio": 0.5}
             for b, k in (("stages.0.0", 9), ("stages.0.1", 8), ("stages.1.1", 7), ("stages.1.2", 6))]
    return write_tiny(tmp_path / "m.pdparams", statistics=stats, training={"schedule": {"name": "uniform"}})


def _unchanged(model, before):
    assert snapshot(model, model.with_name("m.compress.json")) == before
    load_model(model)  # the input still loads


def test_same_file_through_dotdot_and_symlinks(tmp_path):
    (tmp_path / "d").mkdir()
    f = tmp_path / "m.pdparams"
    f.write_bytes(b"x")
    assert same_file(tmp_path / "d" / ".." / "m.pdparams", f)
    (tmp_path / "link.pdparams").symlink_to(f)
    (tmp_path / "dlink").symlink_to(tmp_path)
    assert same_file(tmp_path / "link.pdparams", f) and same_file(tmp_path / "dlink" / "m.pdparams", f)
    assert same_file(tmp_path / "dlink" / "new.pdparams", tmp_path / "new.pdparams")  # need not exist
    assert not same_file(tmp_path / "other.pdparams", f)


def test_check_outputs_names_the_parameter_and_the_input(tmp_path):
    m = tmp_path / "m.pdparams"
    with pytest.raises(CompressError, match="would overwrite the input model's sidecar") as e:
        check_outputs(model_outputs(tmp_path / "m.safetensors"), model_inputs(m))
    assert e.value.param == "out"
    with pytest.raises(CompressError, match="inside"):
        check_outputs([Output(tmp_path, "out_dir", tree=True)], model_inputs(m))
    with pytest.raises(CompressError, match="more than once"):
        check_outputs([Output(tmp_path / "a.pdparams", "out"), Output(tmp_path / "x" / "..", "export_dir", tree=True)],
                      [])
    check_outputs([Output(tmp_path / "n.pdparams", "out"), Output(tmp_path / "exp", "export_dir", tree=True)],
                  model_inputs(m))


def test_prune_out_with_another_suffix_keeps_the_inputs_sidecar(model, tmp_path):
    before = snapshot(model, model.with_name("m.compress.json"))
    err = one_line_error(invoke("prune", model, "--keep", 0.5, "--epochs", 0, "--out", tmp_path / "m.safetensors"))
    assert "--out" in err and "m.compress.json" in err
    assert not (tmp_path / "m.safetensors").exists()
    _unchanged(model, before)


def test_train_out_with_another_suffix_keeps_the_input(model, tmp_path):
    before = snapshot(model, model.with_name("m.compress.json"))
    err = one_line_error(invoke("train", model, "--epochs", 0, "--out", tmp_path / "m.safetensors"))
    assert "--out" in err and "sidecar" in err
    _unchanged(model, before)


@pytest.mark.parametrize("how", ["dotdot", "symlink", "dirlink"])
def test_out_naming_the_input_another_way_is_refused(model, tmp_path, how):
    before = snapshot(model, model.with_name("m.compress.json"))
    (tmp_path / "sub").mkdir()
    if how == "dotdot":
        out = tmp_path / "sub" / ".." / "m.pdparams"
    elif how == "symlink":
        out = tmp_path / "sub" / "alias.pdparams"
        out.symlink_to(model)
    else:
        (tmp_path / "here").symlink_to(tmp_path)
        out = tmp_path / "here" / "m.pdparams"
    for cmd in (["prune", model, "--keep", 0.5, "--epochs", 0], ["train", model, "--epochs", 0]):
        assert "would overwrite the input model" in one_line_error(invoke(*cmd, "--out", out))
    _unchanged(model, before)


@pytest.mark.parametrize("target", ["m.pdparams", "m.compress.json", "sub/../m.pdparams", "alias.png"])
def test_stats_plot_never_replaces_the_model(model, tmp_path, target):
    before = snapshot(model, model.with_name("m.compress.json"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "alias.png").symlink_to(model)
    err = one_line_error(invoke("stats", model, "--plot", tmp_path / target))
    assert "--plot" in err and "would overwrite" in err
    _unchanged(model, before)


def test_out_that_is_a_directory_is_refused_before_any_work(model, tmp_path):
    (tmp_path / "d.pdparams").mkdir()
    err = one_line_error(invoke("prune", model, "--keep", 0.5, "--epochs", 0, "--out", tmp_path / "d.pdparams"))
    assert "is a directory" in err
    # the sidecar's place taken by a directory: refused too, and no weights are left behind
    (tmp_path / "e.compress.json").mkdir()
    err = one_line_error(invoke("prune", model, "--keep", 0.5, "--epochs", 0, "--out", tmp_path / "e.pdparams"))
    assert "e.compress.json" in err and "is a directory" in err
    assert not (tmp_path / "e.pdparams").exists() and hidden(tmp_path) == []
    assert "is a directory" in one_line_error(invoke("stats", model, "--plot", tmp_path / "d.pdparams"))


def test_prune_out_inside_its_own_export_dir_refused_up_front(model, tmp_path):
    err = one_line_error(invoke("prune", model, "--keep", 0.5, "--epochs", 0, "--out", tmp_path / "e" / "k.pdparams",
                                "--export", tmp_path / "e"))
    assert "--export" in err and "--out" in err
    assert not (tmp_path / "e").exists()


def test_export_and_report_never_replace_a_directory_holding_the_model(model, tmp_path):
    os.symlink(tmp_path, tmp_path / "again")
    err = one_line_error(invoke("export", model, "--out", tmp_path / "again", "--force"))
    assert "--out" in err
    rep = tmp_path / "rep"
    (rep / "exports" / "m").mkdir(parents=True)
    inner = write_tiny(rep / "exports" / "m" / "m.pdparams")
    (rep / "exports" / "m" / "export.json").write_text("{}")
    before = snapshot(inner)
    err = one_line_error(invoke("report", inner, "--out", rep, "--runs", 1, "--seconds", 0, "--batch", 1))
    assert "--out" in err and "m.pdparams" in err
    assert snapshot(inner) == before
