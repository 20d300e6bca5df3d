"""Every bad input of the foundation issue gets one clear ImageError naming the file."""
from __future__ import annotations

import errno
import io
import os

import numpy as np
import pytest
from PIL import Image

import explain.images as images_mod
from explain.errors import ExplainError, ImageError
from explain.images import find_images, load_image


def save(path, arr_or_img, **kw):
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("make, problem", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(b"this is not an image at all" * 10), "not a readable image"),
])
def test_unusable_files_get_one_clear_message(tmp_path, make, problem):
    p = tmp_path / "photo.jpg"
    make(p)
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert str(p) in str(e.value) and problem in str(e.value)
    assert "\n" not in str(e.value)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, "JPEG")
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(p)


def test_tiny_image_is_refused(tmp_path):
    with pytest.raises(ImageError, match="1x1 pixels"):
        load_image(save(tmp_path / "dot.png", np.zeros((1, 1, 3), np.uint8)))


def test_decompression_bomb_checked_on_header(tmp_path):
    # A real PNG whose header claims 30000 x 30000 pixels; decoding it would need 2.7 GB.
    p = tmp_path / "bomb.png"
    save(p, Image.new("1", (30000, 30000)))
    with pytest.raises(ImageError, match="900000000 pixels|30000x30000"):
        load_image(p)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA"])
def test_modes_become_rgb(tmp_path, mode):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :15] = (200, 40, 10)
    img = Image.fromarray(rgb).convert(mode)
    p = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    save(p, img)
    out = load_image(p)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert out[:, :15].mean() > out[:, 15:].mean()


def test_rgba_transparent_composited_on_white(tmp_path):
    a = np.zeros((10, 10, 4), np.uint8)
    out = load_image(save(tmp_path / "t.png", a))
    assert (out == 255).all()


def test_16bit_png_is_rescaled_not_clipped(tmp_path):
    a = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(a).save(p)
    out = load_image(p)
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255
    assert 100 < out[..., 0].mean() < 155  # a ramp, not a saturated white image


def test_exif_rotation_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)  # landscape
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 on display
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif)
    assert load_image(p).shape == (40, 20, 3)


def test_find_images_expands_dirs_and_rejects_empty(tmp_path):
    (tmp_path / "sub").mkdir()
    save(tmp_path / "sub" / "a.png", np.zeros((9, 9, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in find_images([str(tmp_path)])] == ["a.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExplainError, match="contains no images"):
        find_images([str(empty)])


def test_special_files_are_named_for_what_they_are_and_never_read(tmp_path):
    """stat before open: a FIFO would block a reader forever, /dev/zero never ends."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.png"
    loop.symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(loop)
    broken = tmp_path / "broken.png"
    broken.symlink_to(tmp_path / "gone.png")
    cases = [(fifo, "is a FIFO (named pipe), not an image file"),
             ("/dev/zero", "is a character device, not an image file"),
             ("/proc/self/status", "a pseudo-file (size 0 but not empty"),
             (loop, "symbolic link loop"),
             (broken, "broken symbolic link"),
             (tmp_path / "file.png" / "x.png", "cannot be read (Not a directory)"),
             (tmp_path / "missing.png", "no such file"),
             (tmp_path, "is a directory, not an image")]
    (tmp_path / "file.png").write_bytes(b"x")
    for path, message in cases:
        with pytest.raises(ImageError) as e:
            load_image(path)
        assert str(e.value).startswith(f"{path}: ") and message in str(e.value), str(e.value)


def test_permission_denied_is_said_not_called_corrupt(tmp_path, monkeypatch):
    """Tests run as root, which reads any file: the refusal is injected where the file is
    opened."""
    p = save(tmp_path / "secret.png", np.zeros((9, 9, 3), np.uint8))

    def refused(path, *args, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr(images_mod, "open", refused, raising=False)
    with pytest.raises(ImageError, match=r"secret.png: cannot be read \(Permission denied\)"):
        load_image(p)


def unlistable(monkeypatch, *folders):
    """Make `folders` fail to list as an unreadable folder does for a user who is not root."""
    real = os.scandir
    blocked = {os.fspath(f) for f in folders}

    def scandir(path="."):
        if os.fspath(path) in blocked:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)


def test_unreadable_sub_folder_is_listed_to_be_reported(tmp_path, monkeypatch):
    for sub in ("a", "b", "b/deep"):
        (tmp_path / sub).mkdir()
        save(tmp_path / sub / "x.png", np.zeros((9, 9, 3), np.uint8))
    unlistable(monkeypatch, tmp_path / "b")
    found = find_images([str(tmp_path)])
    assert found == [tmp_path / "a" / "x.png", tmp_path / "b"]
    with pytest.raises(ImageError, match=r"/b: folder cannot be read \(Permission denied\)"):
        load_image(found[1])


def test_find_images_reports_odd_entries_and_survives_folder_loops(tmp_path):
    save(tmp_path / "ok.png", np.zeros((9, 9, 3), np.uint8))
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "up").symlink_to(tmp_path)  # a folder loop
    os.mkfifo(tmp_path / "pipe.txt")  # not named as an image: not ours to report
    names = [p.name for p in find_images([str(tmp_path)])]
    assert names == ["dangling.jpg", "ok.png", "pipe.png"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_tiff_with_nan_or_inf_is_refused(tmp_path, bad):
    a = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    good = save(tmp_path / "good.tif", Image.fromarray(a, mode="F"))
    assert load_image(good).shape == (16, 16, 3)
    a[3, 4] = bad
    p = save(tmp_path / "bad.tif", Image.fromarray(a, mode="F"))
    with pytest.raises(ImageError, match="bad.tif: floating-point image holds NaN or infinite"):
        load_image(p)
