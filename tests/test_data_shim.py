"""The transitional whole-split arrays (compress.data.compat), as the code base used them before streaming data."""
import numpy as np
import pytest
from PIL import Image

from compress.data import DATA_SOURCES, DigitsSource, load_data
from compress.errors import CompressError


def test_digits_split_is_fixed_and_shaped():
    a = load_data("digits", (1, 16, 16))
    assert a.x_train.shape[1:] == (1, 16, 16) and a.num_classes == 10
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    assert DATA_SOURCES["digits"] is DigitsSource
    b = load_data("digits", (3, 8, 8))
    assert b.x_test.shape[1:] == (3, 8, 8)
    np.testing.assert_array_equal(a.y_test, b.y_test)           # split independent of shape/seed
    assert -1.0 <= a.x_train.min() and a.x_train.max() <= 1.0


def test_npz_layouts_adapt_to_the_input_shape(tmp_path):
    x = np.random.rand(20, 10, 12, 3).astype(np.float32)
    np.savez(tmp_path / "rgb.npz", x=x, y=np.arange(20) % 2)
    np.savez(tmp_path / "grey.npz", x=x[..., 0], y=np.arange(20) % 2)
    assert load_data(str(tmp_path / "rgb.npz"), (1, 8, 8)).x_test.shape == (4, 1, 8, 8)
    assert load_data(str(tmp_path / "grey.npz"), (3, 8, 8)).x_test.shape == (4, 3, 8, 8)


def test_image_folder_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    ds = load_data(str(tmp_path / "imgs"), (1, 8, 8))
    assert ds.num_classes == 2 and ds.class_names == ["cat", "dog"] and len(ds.y_train) == 12
    np.savez(tmp_path / "d.npz", x=rng.random((30, 8, 8)), y=np.arange(30) % 3)
    ds = load_data(str(tmp_path / "d.npz"), (1, 8, 8))
    assert ds.num_classes == 3 and ds.x_val.shape[1:] == (1, 8, 8)


def test_bad_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompressError, match="empty data directory"):
        load_data(str(tmp_path / "empty"), (1, 8, 8))
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_bytes(b"not an image")
    with pytest.raises(CompressError, match="unreadable image"):
        load_data(str(tmp_path / "bad"), (1, 8, 8))
    with pytest.raises(CompressError, match="unknown data source"):
        load_data("imagenet", (1, 8, 8))
    np.savez(tmp_path / "n.npz", a=np.zeros(3))
    with pytest.raises(CompressError, match="needs arrays 'x' and 'y'"):
        load_data(str(tmp_path / "n.npz"), (1, 8, 8))
