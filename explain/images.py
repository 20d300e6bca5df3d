"""Image loading and validation: every way a file can be bad gets one clear message.

Images come back as RGB uint8 arrays (H, W, 3) in their upright orientation (EXIF applied);
grayscale, palette, RGBA, CMYK and 16-bit inputs are all normalised to that. A path is
checked with `stat` before it is opened, so a FIFO or a device is named for what it is and
never read (reading one could block or never end).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ExplainError, ImageError
from .paths import display

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 50_000_000  # decompression-bomb guard, checked on the header before decoding
MIN_SIDE = 8
SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
           (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _stat(path: Path) -> os.stat_result:
    """stat(path), or an ImageError saying why the path leads nowhere usable."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageError(f"{display(path)}: broken symbolic link (its target "
                             "does not exist)") from None
        raise ImageError(f"{display(path)}: no such file") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageError(f"{display(path)}: symbolic link loop ({e.strerror})") from None
        raise ImageError(f"{display(path)}: cannot be read ({e.strerror})") from None


def open_image_file(path: Path) -> BinaryIO:
    """`path` opened for reading if it is a non-empty regular file; otherwise an ImageError
    that says what it is: a folder (readable or not), a FIFO, a device, empty, ..."""
    st = _stat(path)
    if stat.S_ISDIR(st.st_mode):
        try:
            os.scandir(path).close()
        except OSError as e:
            raise ImageError(f"{display(path)}: folder cannot be read ({e.strerror}); "
                             "its images were not listed") from None
        raise ImageError(f"{display(path)}: is a directory, not an image")
    kind = next((name for test, name in SPECIAL if test(st.st_mode)), None)
    if kind is not None:
        raise ImageError(f"{display(path)}: is {kind}, not an image file")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ImageError(f"{display(path)}: cannot be read ({e.strerror})") from None
    if st.st_size == 0:
        content = f.read(1)
        f.close()
        raise ImageError(f"{display(path)}: " + (
            "empty file (0 bytes)" if not content else
            "a pseudo-file (size 0 but not empty, as under /proc or /sys), not an image"))
    return f


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read `path` as an upright RGB uint8 array, or raise ImageError naming the problem."""
    return read_image(path, max_pixels)[0]


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str]:
    """`load_image`, and the file's own PIL mode ("RGB", "L", "I;16", "CMYK", ...): what
    the conversion to 8-bit RGB started from."""
    path = Path(path)
    name = display(path)
    try:
        with warnings.catch_warnings(), open_image_file(path) as f:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(
                        f"{name}: header claims {w}x{h} pixels, over the limit of "
                        f"{max_pixels:,} (possible decompression bomb)")
                if min(w, h) < MIN_SIDE:
                    raise ImageError(f"{name}: image is {w}x{h} pixels; at least "
                                     f"{MIN_SIDE}x{MIN_SIDE} is needed to explain it")
                im.load()
                if im.mode == "F" and not np.isfinite(np.asarray(im)).all():
                    raise ImageError(f"{name}: floating-point image holds NaN or infinite "
                                     "values")
                return to_rgb(ImageOps.exif_transpose(im)), im.mode
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: image too large, possible decompression bomb ({e})") from None
    except OSError as e:
        if e.errno is not None:  # the OS failed the read (EIO, ...), not the decoder
            raise ImageError(f"{name}: cannot be read ({e.strerror})") from None
        raise ImageError(f"{name}: truncated or corrupt image data ({e})") from None
    except (SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: truncated or corrupt image data ({e})") from None


def to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL mode -> RGB uint8. 16/32-bit grayscale is rescaled, alpha composited on white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im.convert("RGBA"))
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def path_digest(path: str | os.PathLike, n: int = 10) -> str:
    """A short hex digest of a path as given (any bytes, any encoding)."""
    return hashlib.sha1(os.fsencode(path)).hexdigest()[:n]


def path_id(path: str | os.PathLike, safe: str = "A-Za-z0-9._-") -> str:
    """A file-name-safe id for an image that survives other working folders, runs and
    ranks: its stem (characters outside `safe` become `_`, at most 40) and a digest of its
    absolute path. Gallery rows and edit-store entries are named by it."""
    stem = re.sub(f"[^{safe}]+", "_", Path(path).stem)[:40] or "image"
    return f"{stem}-{path_digest(Path(path).resolve())}"


def find_images(inputs: list[str]) -> list[Path]:
    """Expand files and directories (recursively, sorted) into image paths.

    Files named explicitly are kept whatever their suffix, so that loading reports their
    problem; so are image-named entries that are not regular files (a FIFO, a broken link)
    and folders that cannot be listed, so that each is reported and counted, never skipped
    in silence. A directory with no images is an error.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = _walk(p)
            if not found:
                raise ExplainError(f"{display(p)}: directory contains no images "
                                   f"({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        else:
            out.append(p)
    return out


def _walk(root: Path) -> list[Path]:
    """Image-named entries under `root` and the folders that could not be listed, sorted.
    Symbolic links to folders are followed, each real folder once (no loops)."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, onerror=lambda e: found.append(Path(e.filename)),
                                       followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        found += [Path(folder, f) for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)
