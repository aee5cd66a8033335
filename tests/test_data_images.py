"""Safe decoding (compress.data.images): header checks name the bad file; modes convert properly."""
import numpy as np
import pytest
from PIL import Image

from compress.data.images import array_to_image, check_image, check_images, load_image, to_channels
from compress.common.errors import EXIT_USAGE, CompressError


def _photo(path, size=(64, 48), mode="RGB", fmt=None, **save):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(a).convert(mode).save(path, fmt, **save)
    return path


def _refused(path, match, **kw):
    with pytest.raises(CompressError, match=match) as e:
        check_image(path, **kw)
    assert str(path) in str(e.value) and "\n" not in str(e.value) and e.value.exit_code == EXIT_USAGE


def test_header_check_names_each_bad_file(tmp_path):
    good = [_photo(tmp_path / "ok.jpg"), _photo(tmp_path / "ok.png")]
    for p in good:
        check_image(p)
    (tmp_path / "zero.png").write_bytes(b"")
    _refused(tmp_path / "zero.png", "empty file, 0 bytes")
    (tmp_path / "text.jpg").write_text("not an image")
    _refused(tmp_path / "text.jpg", "not an image file")
    for p in good:  # cut in the middle of the pixel data: the header is intact, the end marker is not
        data = p.read_bytes()
        cut = tmp_path / f"cut{p.suffix}"
        cut.write_bytes(data[:len(data) // 2])
        _refused(cut, "truncated")
    (tmp_path / "head.png").write_bytes(good[1].read_bytes()[:20])  # cut inside the header
    _refused(tmp_path / "head.png", "unreadable image")
    _refused(tmp_path / "missing.png", "unreadable image")


def test_too_many_pixels_and_decompression_bombs(tmp_path):
    p = _photo(tmp_path / "a.png", size=(12, 10))                 # 120 pixels
    _refused(p, r"120 pixels, over the cap of 100\b", max_pixels=100)
    _refused(p, "over twice the cap of 50 pixels", max_pixels=50)   # PIL's own DecompressionBombError
    assert Image.MAX_IMAGE_PIXELS > 10**7                          # PIL's global limit is restored
    with pytest.raises(CompressError, match="over the cap"):
        load_image(p, max_pixels=100)


def test_unsupported_mode(tmp_path):
    Image.new("F", (4, 4)).save(tmp_path / "f.tif")
    _refused(tmp_path / "f.tif", "unsupported image mode 'F'")


def test_check_images_reports_the_first_bad_file_and_the_count(tmp_path):
    paths = [_photo(tmp_path / f"{i}.png", size=(8, 8)) for i in range(3)]
    for i in (1, 2):
        paths[i].write_bytes(b"")
    with pytest.raises(CompressError, match=r"1\.png: .*\(1 more of the 3 files fail"):
        check_images([str(p) for p in paths])
    assert check_images([str(paths[0])]) == 1


def test_sixteen_bit_grey_is_scaled_not_saturated(tmp_path):
    v = np.array([[0, 257, 32768, 65535]], np.uint16)
    Image.fromarray(v).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    im = load_image(tmp_path / "g16.png")
    assert im.mode == "L" and np.asarray(im).tolist() == [[0, 1, 128, 255]]
    Image.fromarray(v.astype(np.int32)).save(tmp_path / "i32.tif")  # mode "I": 16-bit range too
    assert np.asarray(load_image(tmp_path / "i32.tif")).tolist() == [[0, 1, 128, 255]]


def test_palette_alpha_cmyk_and_grey_conversions(tmp_path):
    pal = Image.new("P", (4, 4))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.save(tmp_path / "pal.png", transparency=0)               # index 0 (red) is transparent
    assert np.asarray(load_image(tmp_path / "pal.png"))[0, 0].tolist() == [255, 255, 255]
    pal.save(tmp_path / "pal_opaque.png")
    assert np.asarray(load_image(tmp_path / "pal_opaque.png"))[0, 0].tolist() == [255, 0, 0]
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "rgba.png")
    assert np.asarray(load_image(tmp_path / "rgba.png"))[0, 0].tolist() == [255, 255, 255]
    Image.new("LA", (4, 4), (0, 128)).save(tmp_path / "la.png")   # half-transparent black over white
    la = load_image(tmp_path / "la.png")
    assert la.mode == "L" and abs(int(np.asarray(la)[0, 0]) - 127) <= 1
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    cmyk = load_image(tmp_path / "cmyk.jpg")
    assert cmyk.mode == "RGB" and np.asarray(cmyk)[0, 0].tolist() == [255, 0, 0]
    Image.new("1", (4, 4), 1).save(tmp_path / "bw.png")
    assert np.asarray(load_image(tmp_path / "bw.png")).max() == 255
    grey = Image.new("L", (2, 2), 77)
    assert np.asarray(to_channels(grey, 3)).tolist() == [[[77] * 3] * 2] * 2       # repeated
    rgb = Image.new("RGB", (2, 2), (255, 0, 0))
    assert to_channels(rgb, 1).mode == "L" and np.asarray(to_channels(rgb, 1))[0, 0] == 76  # 601-2 luma


def test_jpeg_draft_decodes_at_the_smallest_scale_that_is_large_enough(tmp_path):
    p = _photo(tmp_path / "big.jpg", size=(640, 480))
    assert load_image(p).size == (640, 480)
    assert load_image(p, (224, 224)).size == (320, 240)
    assert load_image(p, (100, 100)).size == (160, 120)
    assert load_image(p, (256, 256)).size == (640, 480)           # 1/2 would give 240 < 256


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6                                              # rotate 90 degrees clockwise to view
    _photo(tmp_path / "rot.jpg", size=(40, 20), exif=exif.tobytes())
    assert load_image(tmp_path / "rot.jpg").size == (20, 40)


def test_array_to_image_scales_and_rounds():
    a = np.array([[0.0, 0.5, 1.0]], np.float32)
    assert np.asarray(array_to_image(a, 255.0)).tolist() == [[0, 128, 255]]
    rgb = np.zeros((2, 2, 3), np.uint8)
    assert array_to_image(rgb).mode == "RGB" and array_to_image(rgb[..., :1]).mode == "L"
