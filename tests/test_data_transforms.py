"""The preprocessing recipe (compress.data.transforms): validation, transforms, the sidecar record."""
import itertools
import json
import random

import numpy as np
import pytest
from PIL import Image

from compress.data import DigitsSource, FolderSource, Preprocess
from compress.common.errors import CompressError


def _img(w=40, h=30, mode="RGB"):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)


@pytest.mark.parametrize("bad", [(2, 8, 8), (3, 0, 8), (3, 8)], ids=["two-channels", "zero-height", "two-dims"])
def test_bad_input_shape_is_refused(bad):
    with pytest.raises(CompressError, match="input shape"):
        Preprocess(bad)


def test_validation():
    with pytest.raises(CompressError, match="--normalize must be one of half, imagenet"):
        Preprocess((3, 8, 8), normalize="zscore")
    with pytest.raises(CompressError, match="--augment"):
        Preprocess((3, 8, 8), augment="heavy")
    with pytest.raises(CompressError, match="--resize"):
        Preprocess((3, 8, 8), resize="long")
    assert Preprocess([1, "16", 16]).input_shape == (1, 16, 16)


def test_json_round_trip_for_every_combination():
    for shape, r, n, a in itertools.product([(1, 16, 16), (3, 224, 160)], ["exact", "short"],
                                             ["half", "imagenet"], ["none", "light", "standard"]):
        p = Preprocess(shape, r, n, a)
        record = json.loads(json.dumps(p.to_json()))
        assert Preprocess.from_json(record) == p
    with pytest.raises(CompressError, match="differs from the model"):
        Preprocess.from_json(Preprocess((3, 8, 8)).to_json(), input_shape=(3, 9, 9))
    with pytest.raises(CompressError, match="unknown preprocess format"):
        Preprocess.from_json({"format": "compress-preprocess/99"})
    with pytest.raises(CompressError, match="malformed"):
        Preprocess.from_json({"format": "compress-preprocess/1", "input_shape": [3, 8, 8]})


def test_the_record_holds_what_a_device_needs():
    rec = Preprocess((3, 224, 224), "short", "imagenet", "standard").to_json()
    assert rec["resize"] == {"rule": "short", "short_side": 256, "interpolation": "bilinear",
                             "library": "PIL (antialiased when shrinking)"}
    assert rec["crop"] == {"rule": "center", "size": [224, 224]}
    assert rec["mean"] == [0.485, 0.456, 0.406] and rec["std"] == [0.229, 0.224, 0.225]
    assert rec["scale"] == 1 / 255 and rec["layout"] == "NCHW" and rec["channel_order"] == "RGB"
    grey = Preprocess((1, 16, 16)).to_json()
    assert grey["resize"]["size"] == [16, 16] and grey["crop"] is None and grey["mean"] == [0.5]


def test_legacy_sidecar_record_means_exact_half():
    legacy = {"layout": "NCHW", "range": [0, 1], "mean": 0.5, "std": 0.5,
              "note": "pixels scaled to [0,1], then (x - mean) / std"}
    assert Preprocess.from_json(legacy, input_shape=(1, 16, 16)) == Preprocess((1, 16, 16), "exact", "half", "none")
    with pytest.raises(CompressError, match="unknown preprocess record"):
        Preprocess.from_json({"mean": 0.3}, input_shape=(1, 16, 16))


def test_eval_transform_values():
    img = _img()
    x = Preprocess((3, 30, 40), "exact", "half").eval_transform()(img)   # same size: no resampling
    assert x.dtype == np.float32 and x.shape == (3, 30, 40)
    ref = (np.asarray(img, np.float32).transpose(2, 0, 1) / 255 - 0.5) / 0.5
    np.testing.assert_allclose(x, ref, atol=1e-6)
    x = Preprocess((3, 30, 40), "exact", "imagenet").eval_transform()(img)
    mean, std = np.array([0.485, 0.456, 0.406])[:, None, None], np.array([0.229, 0.224, 0.225])[:, None, None]
    np.testing.assert_allclose(x, (np.asarray(img, np.float32).transpose(2, 0, 1) / 255 - mean) / std, atol=1e-5)
    grey = Preprocess((1, 8, 8), "exact", "imagenet")
    assert grey.eval_transform()(_img(mode="L")).shape == (1, 8, 8) and grey.mean == [0.449]


def test_short_side_resize_then_centre_crop():
    p = Preprocess((3, 14, 14), "short", "half")
    assert p.short_side == 16 and p.size_hint == (16, 16)
    # an 80x40 image, left half white: resized to 32x16 (white columns 0..15); the centre 14x14
    # crop is columns 9..22, so white in crop columns 0..6 and black from 7 on (blurred at the edge)
    a = np.zeros((40, 80, 3), np.uint8)
    a[:, :40] = 255
    x = p.eval_transform()(Image.fromarray(a))
    assert x.shape == (3, 14, 14)
    assert (x[:, :, :6] > 0.9).all() and (x[:, :, 8:] < -0.9).all()


def test_light_augmentation_is_a_small_translation():
    p = Preprocess((1, 16, 16), "exact", "half", "light")
    assert p.pad == 1 and Preprocess((3, 224, 224), augment="light").pad == 14
    img = _img(16, 16, "L")
    base = p.eval_transform()(img)[0]
    seen = set()
    t = p.train_transform()
    for s in range(40):
        random.seed(s)
        out = t(img)[0]
        shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                  if np.allclose(out[max(0, dy):16 + min(0, dy), max(0, dx):16 + min(0, dx)],
                                 base[max(0, -dy):16 + min(0, -dy), max(0, -dx):16 + min(0, -dx)])]
        assert shifts, "not a translation by at most one pixel"
        seen.update(shifts)
    assert len(seen) > 4


def test_standard_augmentation_shape_and_randomness():
    p = Preprocess((3, 24, 24), "short", "imagenet", "standard")
    t = p.train_transform()
    outs = []
    for s in (0, 1, 0):
        random.seed(s)
        np.random.seed(s)
        outs.append(t(_img()))
    assert outs[0].shape == (3, 24, 24) and outs[0].dtype == np.float32
    np.testing.assert_array_equal(outs[0], outs[2])
    assert not np.array_equal(outs[0], outs[1])
    plain = Preprocess((3, 8, 8), augment="none")
    np.testing.assert_array_equal(plain.train_transform()(_img()), plain.eval_transform()(_img()))


def test_source_defaults():
    digits = Preprocess.for_source(DigitsSource, (1, 16, 16))
    assert (digits.resize, digits.normalize, digits.augment) == ("exact", "half", "light")
    photos = Preprocess.for_source(FolderSource, (3, 224, 224), augment="none")
    assert (photos.resize, photos.normalize, photos.augment) == ("short", "imagenet", "none")
