"""The procedural `shapes` source and `compress data make`."""
import json

import numpy as np
import pytest
from helpers import invoke, one_line_error

from compress.data import Preprocess, load_arrays, open_source, source_kind
from compress.data.shapes import CLASSES, ShapesSource, parse_spec, render, split_ranges
from compress.common.errors import CompressError


def test_images_are_a_pure_function_of_seed_index_and_size():
    a, la = render(17, 32, seed=0)
    b, lb = render(17, 32, seed=0)
    assert la == lb == 17 % 10 and np.array_equal(np.asarray(a), np.asarray(b))
    assert a.size == (32, 32) and a.mode == "RGB"
    assert not np.array_equal(np.asarray(a), np.asarray(render(17, 32, seed=1)[0]))
    assert not np.array_equal(np.asarray(a), np.asarray(render(27, 32, seed=0)[0]))  # same class, another image
    assert render(3, 96)[0].size == (96, 96)  # any resolution


def test_splits_are_balanced_and_large_enough():
    r = split_ranges(10_000)
    assert [len(r[s]) for s in ("train", "val", "test")] == [6000, 2000, 2000]
    src = ShapesSource()
    for split in ("train", "val", "test"):
        assert np.bincount(src.labels(split), minlength=10).tolist() == [src.size(split) // 10] * 10
    assert src.num_classes == 10 and src.class_names == list(CLASSES)
    assert src.describe()["test"] * 0.005 >= 10  # 0.5 points are at least 10 test images


def test_spec():
    assert source_kind("shapes") == "shapes" and source_kind("shapes:500:3") == "shapes"
    assert parse_spec("shapes:500:3") == (500, 3)
    src = open_source("shapes:500:3")
    assert src.describe()["source"] == "shapes:500:3" and src.size("test") == 100


@pytest.mark.parametrize("bad", ["shapes:x", "shapes:5", "shapes:500:-1", "shapes:1:2:3"])
def test_bad_spec_is_refused(bad):
    with pytest.raises(CompressError, match="shapes"):
        parse_spec(bad)


def test_rendered_at_the_model_input_size_through_the_eval_transform():
    src = open_source("shapes:200")
    x, y = load_arrays(src, "test", Preprocess((3, 24, 24)))
    assert x.shape == (40, 3, 24, 24) and x.dtype == np.float32 and -1.0 <= x.min() and x.max() <= 1.0
    assert sorted(set(y.tolist())) == list(range(10))
    grey, _ = load_arrays(src, "test", Preprocess((1, 24, 24)), n=4)
    assert grey.shape == (4, 1, 24, 24)


def test_data_make_writes_an_image_folder_that_reads_back(tmp_path):
    out = tmp_path / "shapes"
    res = invoke("data", "make", "shapes", "--out", out, "--count", 200, "--size", 24, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["splits"] == {"train": 120, "val": 40, "test": 40}
    assert len(list((out / "test" / "star").glob("*.jpg"))) == 4
    src = open_source(str(out))
    assert src.kind == "folder" and src.size("train") == 120 and src.class_names == sorted(CLASSES)
    # refuses to write into a non-empty directory, and leaves no temporary directory behind
    err = one_line_error(invoke("data", "make", "shapes", "--out", out, "--count", 200))
    assert "not empty" in err and "--out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]
    assert "unknown data set" in one_line_error(invoke("data", "make", "cifar", "--out", tmp_path / "c"))
    assert "--size" in one_line_error(invoke("data", "make", "--out", tmp_path / "s", "--size", 4))


def test_train_on_shapes(tmp_path):
    out = tmp_path / "m.pdparams"
    res = invoke("train", "--arch", "tiny_models:TinyCNN", "--arch-kwargs", '{"in_chans": 3}', "--input-shape",
                 "3,16,16", "--data", "shapes:300", "--epochs", 1, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    sc = json.loads(out.with_name("m.compress.json").read_text())
    assert sc["data"]["source"] == "shapes:300" and sc["num_classes"] == 10 and sc["data"]["test"] == 60
