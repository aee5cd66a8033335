"""The Sidecar record: the shipped sidecars load unchanged and are written back byte for byte;
unknown keys survive; keys a file lacks stay out of it; it still reads like the JSON object."""
import json

import pytest

from compress.common.errors import CompressError
from compress.model.sidecar import SIDECAR_FORMAT, Sidecar, read_sidecar, sidecar_path, write_sidecar
from compress.workflows.sweep import sample_model


@pytest.mark.parametrize("name", ["resnet_tiny", "vit_tiny"])
def test_shipped_sidecars_round_trip_byte_for_byte(name, tmp_path):
    src = sample_model(name)
    sc = read_sidecar(src)
    assert sc.spec == name and sc.data_source == "digits" and sc.schedule["name"] == "adaptive"
    assert sc.to_json() == json.loads(sidecar_path(src).read_text())
    out = tmp_path / f"{name}.pdparams"
    write_sidecar(out, sc)
    assert sidecar_path(out).read_bytes() == sidecar_path(src).read_bytes()


def test_unknown_keys_kept_and_absent_keys_stay_absent(tmp_path):
    data = {"format": SIDECAR_FORMAT, "arch": {"spec": "resnet_tiny", "kwargs": {}}, "input_shape": [1, 8, 8],
            "my_tool": {"note": "kept"}}
    sc = Sidecar.from_json(data)
    assert sc.extra == {"my_tool": {"note": "kept"}} and sc.lineage == [] and sc.statistics is None
    assert sc.to_json() == data                     # nothing added, nothing lost
    sc.num_classes = 10                             # a value given is written
    assert sc.to_json()["num_classes"] == 10
    child = sc.replace(blocks=[{"path": "b.0"}], statistics=None, drop=("num_classes",))
    assert "num_classes" not in child.to_json() and child.to_json()["statistics"] is None
    assert child.to_json()["blocks"] == [{"path": "b.0"}] and "blocks" not in sc.to_json()


def test_reads_like_the_json_object():
    sc = Sidecar.from_json({"format": SIDECAR_FORMAT, "blocks": [1, 2], "x": 1})
    assert sc["blocks"] == [1, 2] and sc["x"] == 1 and sc["format"] == SIDECAR_FORMAT
    assert sc.get("lineage") is None and "lineage" not in sc and "blocks" in sc
    assert {**sc} == sc.to_json() == {"format": SIDECAR_FORMAT, "blocks": [1, 2], "x": 1}
    with pytest.raises(KeyError):
        sc["metrics"]


def test_not_a_sidecar(tmp_path):
    w = tmp_path / "m.pdparams"
    with pytest.raises(CompressError, match="no sidecar"):
        read_sidecar(w)
    assert read_sidecar(w, required=False) is None
    sidecar_path(w).write_text(json.dumps({"format": "other"}))
    with pytest.raises(CompressError, match="not a compress sidecar"):
        read_sidecar(w)


def test_lineage_steps_are_typed_and_old_prune_steps_are_recognised():
    from compress.model.sidecar import LineageStep, check_sidecar
    old_prune = {"parent": "/m/a.pdparams", "keep": 0.5, "keep_total": 0.5, "criterion": "survival", "removed": ["b.1"]}
    new_prune = LineageStep.of("prune", "/m/a.keep0.5.pdparams", keep=0.5, keep_total=0.25).to_json()
    sc = Sidecar.from_json({"format": SIDECAR_FORMAT, "lineage": [{"parent": "/m/r.pdparams", "step": "train"},
                                                                 old_prune, new_prune]})
    assert [s.kind for s in sc.steps] == ["train", "prune", "prune"]
    assert [s.parent for s in sc.prune_steps] == ["/m/a.pdparams", "/m/a.keep0.5.pdparams"]
    assert sc.prune_steps[0]["keep_total"] == 0.5 and sc.prune_steps[0].get("granularity") is None  # reads like JSON
    assert sc.prune_steps[0].to_json() == old_prune and list(new_prune)[:2] == ["parent", "step"]
    assert sc.to_json()["lineage"][1] == old_prune                       # an old file is written back as it was
    with pytest.raises(ValueError, match="train, prune"):
        LineageStep.of("distil", "/m/a.pdparams")
    bad = Sidecar.from_json({"format": SIDECAR_FORMAT, "lineage": [{"parent": "/m/a", "step": "distil"}]})
    with pytest.raises(CompressError, match="lineage"):
        check_sidecar(bad, "m.compress.json")
