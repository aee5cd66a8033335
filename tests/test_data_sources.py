"""Data sources (compress.data): digits, class folders, list files, .npz; splits and refusals."""
import os
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from compress.data import (DATA_SOURCES, DigitsSource, FolderSource, ListSource, NpzSource, open_source,
                           source_kind, stored_source)
from compress.common.errors import CompressError


def _png(path, value=0, size=(6, 5)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def _classes(root, names=("cat", "dog"), n=10):
    for c, name in enumerate(names):
        for i in range(n):
            _png(root / name / f"{i}.png", value=10 * c + i)
    return root


def _refused(spec, match):
    with pytest.raises(CompressError, match=match) as e:
        open_source(str(spec))
    assert "\n" not in str(e.value)
    return str(e.value)


# --------------------------------------------------------------------------- digits
def test_digits_split_is_today_s_exactly():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x, y = d.images / 16.0, d.target
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.4, random_state=0, stratify=y)
    x_va, x_te, y_va, y_te = train_test_split(x_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
    src = open_source("digits")
    assert isinstance(src, DigitsSource) and src.num_classes == 10 and src.class_names[3] == "3"
    for split, xs, ys in (("train", x_tr, y_tr), ("val", x_va, y_va), ("test", x_te, y_te)):
        np.testing.assert_array_equal(src.labels(split), ys)
        got = np.stack([np.asarray(src.image(split, i)) for i in range(len(ys))])
        np.testing.assert_array_equal(got, np.rint(xs * 255).astype(np.uint8))
    assert src.describe() == {"source": "digits", "kind": "digits", "train": 1078, "val": 359, "test": 360,
                              "classes": 10, "split": "stratified 60/20/20, seed 0"}
    assert src.stored_source == "digits" and src.default_workers == 0


# --------------------------------------------------------------------------- folders
def test_flat_folder(tmp_path):
    root = _classes(tmp_path / "imgs")
    (root / "cat" / "notes.txt").write_text("not an image")           # ignored: not an image suffix
    (root / "cat" / "._0.png").write_bytes(b"\0AppleDouble")          # ignored: hidden
    (root / ".thumbs").mkdir()                                         # ignored: hidden class folder
    src = open_source(str(root))
    assert isinstance(src, FolderSource) and src.class_names == ["cat", "dog"]
    assert [src.size(s) for s in ("train", "val", "test")] == [12, 4, 4]
    assert sorted(np.bincount(src.labels("train")).tolist()) == [6, 6]             # stratified
    assert src.image("train", 0).mode == "RGB" and src.path("train", 0).startswith(str(root.resolve()))
    assert src.describe()["source"] == str(root.resolve()) and src.defaults["normalize"] == "imagenet"
    src2 = open_source(str(root))
    assert [src2.path("test", i) for i in range(4)] == [src.path("test", i) for i in range(4)]  # fixed split


def test_split_folder_given_and_carved(tmp_path):
    for s in ("train", "val", "test"):
        _classes(tmp_path / "three" / s, n=10 if s == "train" else 3)
    src = open_source(str(tmp_path / "three"))
    assert [src.size(s) for s in ("train", "val", "test")] == [20, 6, 6]
    assert src.split_rule == "given: train/val/test"
    assert all("/test/" in src.path("test", i) for i in range(6))
    for s in ("train", "val"):                                          # the ImageNet layout
        _classes(tmp_path / "two" / s, n=10 if s == "train" else 3)
    src = open_source(str(tmp_path / "two"))
    assert [src.size(s) for s in ("train", "val", "test")] == [18, 2, 6]
    assert all("/val/" in src.path("test", i) for i in range(6))
    assert sorted(src.labels("val").tolist()) == [0, 1]                  # stratified 10 % of train


def test_split_folder_class_sets_must_match(tmp_path):
    _classes(tmp_path / "d" / "train", ("cat", "dog"))
    _classes(tmp_path / "d" / "val", ("cat", "dog"), n=2)
    _classes(tmp_path / "d" / "test", ("cat", "cow"), n=2)
    err = _refused(tmp_path / "d", "class folders differ between splits")
    assert "test/ lacks ['dog']" in err and "test/ has ['cow'], which train/ lacks" in err


def test_folder_structure_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    _refused(tmp_path / "empty", "empty data directory")
    _classes(tmp_path / "one", ("cat",))
    _refused(tmp_path / "one", "need at least 2 class folders, found 1")
    _classes(tmp_path / "hollow", ("cat",))
    (tmp_path / "hollow" / "dog").mkdir()
    _refused(tmp_path / "hollow", r"class folders without images: \['dog'\]")
    bad = _classes(tmp_path / "bad")
    (bad / "dog" / "3.png").write_bytes(b"")
    _refused(bad, r"dog/3\.png: unreadable image \(empty file")


# --------------------------------------------------------------------------- list files
def _lists(root, train=None, val=None, test=None, labels=None):
    root.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train", train), ("val", val), ("test", test)):
        if lines is not None:
            (root / f"{name}_list.txt").write_text("\n".join(lines) + "\n")
    if labels is not None:
        (root / "label_list.txt").write_text("\n".join(labels) + "\n")
    return root


def _list_data(root, n_train=10, n_val=4):
    for i in range(n_train + n_val):
        _png(root / "my images" / f"im {i}.png", value=i)
    train = [f"my images/im {i}.png {i % 2}" for i in range(n_train)]
    val = [f"my images/im {i}.png {i % 2}" for i in range(n_train, n_train + n_val)]
    return train, val


def test_list_files(tmp_path):
    train, val = _list_data(tmp_path)
    root = _lists(tmp_path, train, val + [""], labels=["0 tabby cat", "1 dog"])
    src = open_source(str(root))
    assert isinstance(src, ListSource) and src.class_names == ["tabby cat", "dog"]
    assert [src.size(s) for s in ("train", "val", "test")] == [9, 1, 4]  # val_list is the held-out test
    assert src.path("test", 0).endswith("my images/im 10.png") and src.labels("test").tolist() == [0, 1, 0, 1]
    same = open_source(str(root / "train_list.txt"))                     # the training list's path works too
    assert same.size("test") == 4 and source_kind(str(root / "train_list.txt")) == "list"
    _lists(root, test=val[:2])
    src = open_source(str(root))
    assert [src.size(s) for s in ("train", "val", "test")] == [10, 4, 2] and src.split_rule == "given: train/val/test"


@pytest.mark.parametrize("case, line, match", [
    ("missing", 3, "no such image file"),
    ("malformed", 2, "malformed line"),
    ("word", 4, "label 'dog' is not an integer"),
    ("range", 5, r"label 2 is out of range \[0, 2\): label_list.txt names 2 classes"),
    ("negative", 1, r"label -1 is out of range"),
])
def test_list_file_errors_name_the_line(tmp_path, case, line, match):
    train, val = _list_data(tmp_path)
    bad = {"missing": "my images/nothing.png 0", "malformed": "my_images_without_label.png",
           "word": "my images/im 0.png dog", "range": "my images/im 0.png 2", "negative": "my images/im 0.png -1"}[case]
    train[line - 1] = bad
    _lists(tmp_path, train, val, labels=["0 cat", "1 dog"])
    err = _refused(tmp_path, match)
    assert f"train_list.txt:{line}:" in err


def test_list_labels_without_a_label_list(tmp_path):
    train, val = _list_data(tmp_path)
    train[6] = "my images/im 6.png 1000000000"
    _lists(tmp_path, train, val)
    _refused(tmp_path, r"train_list.txt:7: label 1000000000 is out of range \[0, 14\): without a label_list.txt")
    train, val = _list_data(tmp_path)
    _lists(tmp_path, train, val)
    assert open_source(str(tmp_path)).class_names == ["0", "1"]
    (tmp_path / "val_list.txt").unlink()
    _refused(tmp_path / "train_list.txt", "needs val_list.txt next to it")
    (tmp_path / "notes.txt").write_text("a.png 0\n")
    _refused(tmp_path / "notes.txt", "name the training list")


def test_list_header_check_runs_at_open(tmp_path):
    train, val = _list_data(tmp_path)
    (tmp_path / "my images" / "im 12.png").write_text("broken")
    _lists(tmp_path, train, val)
    _refused(tmp_path, r"im 12\.png: unreadable image")


# --------------------------------------------------------------------------- npz
def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024


def test_npz_is_read_in_place_not_copied(tmp_path):
    n = 1000
    x = np.zeros((n, 256, 256), np.uint8)                     # 65 MB
    x[:, 0, 0] = np.arange(n) % 256
    np.savez(tmp_path / "big.npz", x=x, y=np.arange(n) % 4)
    del x
    before = _rss_mb()
    src = open_source(str(tmp_path / "big.npz"))
    assert isinstance(src, NpzSource) and src.x.path == str(tmp_path / "big.npz") and src.x.offset > 0
    firsts = [np.asarray(src.image(s, i))[0, 0] for s in ("train", "val", "test") for i in range(src.size(s))]
    grown = _rss_mb() - before
    assert grown < 20, f"resident memory grew by {grown:.0f} MB reading a 65 MB array"
    assert sorted(firsts) == sorted((np.arange(n) % 256).tolist())
    mm = src.x.memmap()
    assert isinstance(mm, np.memmap) and mm.shape == (n, 256, 256) and mm[7, 0, 0] == 7


def test_npz_compressed_members_are_extracted_once_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    x = rng.random((30, 8, 8, 3)).astype(np.float32)
    np.savez_compressed(tmp_path / "c.npz", x=x, y=np.arange(30) % 3)
    src = open_source(str(tmp_path / "c.npz"))
    assert src.x.path.startswith(str(tmp_path / "cache" / "compress" / "npz"))
    cached = os.stat(src.x.path).st_mtime_ns
    assert os.stat(open_source(str(tmp_path / "c.npz")).x.path).st_mtime_ns == cached   # reused
    i = int(src._items["test"][0])
    np.testing.assert_array_equal(np.asarray(src.image("test", 0)), np.rint(x[i] * 255).astype(np.uint8))
    time.sleep(0.01)
    np.savez_compressed(tmp_path / "c.npz", x=x[:20], y=np.arange(20) % 2)             # a new version
    assert open_source(str(tmp_path / "c.npz")).size("train") == 12
    assert len(list((tmp_path / "cache" / "compress" / "npz").glob("*x.npy"))) == 1     # the stale copy went


def test_npz_layouts_and_scales_give_the_same_images(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 6, 7, 3)).astype(np.uint8)
    y = np.arange(20) % 2
    variants = {"nhwc": x, "nchw": x.transpose(0, 3, 1, 2), "unit": x.astype(np.float64) / 255}
    images = {}
    for name, arr in variants.items():
        np.savez(tmp_path / f"{name}.npz", x=arr, y=y)
        src = open_source(str(tmp_path / f"{name}.npz"))
        images[name] = np.stack([np.asarray(src.image("train", i)) for i in range(src.size("train"))])
    np.testing.assert_array_equal(images["nhwc"], images["nchw"])
    np.testing.assert_array_equal(images["nhwc"], images["unit"])
    np.savez(tmp_path / "grey.npz", x=x[..., 0], y=y)
    assert open_source(str(tmp_path / "grey.npz")).image("val", 0).mode == "L"


@pytest.mark.parametrize("arrays, match", [
    ({}, r"needs arrays 'x' and 'y', found \[\]"),
    ({"a": np.zeros(3)}, r"needs arrays 'x' and 'y', found \['a'\]"),
    ({"x": np.array([["a"] * 4] * 20), "y": np.zeros(20, int)}, "x must hold numbers, found dtype <U1"),
    ({"x": np.full((20, 4, 4), np.nan), "y": np.zeros(20, int)}, r"NaN or infinite values \(first in image 0\)"),
    ({"x": np.zeros((20, 4, 4)), "y": np.r_[np.zeros(19, int), 10**9]},
     r"label 1000000000 \(image 19\) is out of range"),
    ({"x": np.zeros((20, 4, 4)), "y": np.zeros(20)}, "labels must be a 1-D array of non-negative integers"),
    ({"x": np.zeros((20, 4, 4)), "y": np.zeros((20, 1), int)}, "labels must be a 1-D array"),
    ({"x": np.zeros((20, 4, 4)), "y": np.zeros(19, int)}, "x has 20 images, y 19 labels"),
    ({"x": np.zeros((20, 5, 4, 4)), "y": np.zeros(20, int)}, "cannot adapt 5-channel images"),
    ({"x": np.full((20, 4, 4), 300.0), "y": np.zeros(20, int)}, r"must be in \[0, 1\] or 0..255, found 300..300"),
    ({"x": np.full((20, 4, 4), -0.5), "y": np.zeros(20, int)}, "must be in"),
    ({"x": np.zeros((20, 4)), "y": np.zeros(20, int)}, "x must be N,H,W or N,C,H,W"),
])
def test_npz_refusals(tmp_path, arrays, match):
    np.savez(tmp_path / "d.npz", **arrays)
    _refused(tmp_path / "d.npz", match)


def test_npz_nan_found_in_a_later_chunk(tmp_path, monkeypatch):
    import compress.data.npz as npz

    monkeypatch.setattr(npz, "CHUNK_BYTES", 64)
    x = np.zeros((20, 4, 4), np.float32)
    x[17, 2, 2] = np.inf
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(20, int))
    _refused(tmp_path / "d.npz", r"first in image 17")


def test_npz_not_a_zip_and_pickled_objects(tmp_path):
    (tmp_path / "fake.npz").write_text("hello")
    _refused(tmp_path / "fake.npz", "not a readable .npz")
    _refused(tmp_path / "missing.npz", "no such file")
    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as z:
        with z.open("x.npy", "w") as f:
            np.save(f, np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True)
        with z.open("y.npy", "w") as f:
            np.save(f, np.zeros(20, int))
    _refused(tmp_path / "obj.npz", "holds Python objects")


# --------------------------------------------------------------------------- the registry
def test_registry_and_stored_source(tmp_path):
    assert list(DATA_SOURCES) == ["digits", "shapes", "npz", "list", "folder"]
    assert source_kind("digits") == "digits"
    _classes(tmp_path / "f")
    assert source_kind(str(tmp_path / "f")) == "folder"
    _png(tmp_path / "l" / "a.png")
    _lists(tmp_path / "l", ["a.png 0"], ["a.png 0"])
    assert source_kind(str(tmp_path / "l")) == "list"
    with pytest.raises(CompressError, match="unknown data source 'imagenet'"):
        source_kind("imagenet")
    with pytest.raises(CompressError, match="not a data directory, list file"):
        source_kind(str(_png(tmp_path / "x.png")))
    assert stored_source("digits") == "digits" and stored_source(None) is None
    assert stored_source(os.path.relpath(tmp_path / "f")) == str((tmp_path / "f").resolve())


def test_label_list_ids_must_be_complete(tmp_path):
    train, val = _list_data(tmp_path)
    _lists(tmp_path, train, val, labels=["0 cat", "2 dog"])
    _refused(tmp_path, r"label_list.txt: class ids must be 0..K-1 with none missing; found \[0, 2\]")
    _lists(tmp_path, train, val, labels=["0 cat", "0 dog"])
    _refused(tmp_path, r"label_list.txt:2: class id 0 appears twice")


def test_list_lines_outside_the_lists_folder_are_refused_unless_allowed(tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere"
    _png(outside / "secret.png", value=1)
    train, val = _list_data(tmp_path / "ds")
    train[2] = "../elsewhere/secret.png 0"
    root = _lists(tmp_path / "ds", train, val)
    err = _refused(root, r"train_list.txt:3: '../elsewhere/secret.png' is outside the list's folder")
    assert "COMPRESS_LIST_OUTSIDE_ROOT=1" in err
    train[2] = "../../../../etc/passwd 0"
    _lists(root, train, val)
    assert "outside the list's folder" in _refused(root, "outside the list's folder")
    monkeypatch.setenv("COMPRESS_LIST_OUTSIDE_ROOT", "1")
    train[2] = "../elsewhere/secret.png 0"
    _lists(root, train, val)
    assert open_source(str(root)).size("train") + open_source(str(root)).size("val") == 10
