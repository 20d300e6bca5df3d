"""Image loading and validation: every way a file can be bad gets one clear message.

Images come back as RGB uint8 arrays (H, W, 3) in their upright orientation (EXIF applied);
grayscale, palette, RGBA, CMYK and 16-bit inputs are all normalised to that.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ExplainError, ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 50_000_000  # decompression-bomb guard, checked on the header before decoding
MIN_SIDE = 8


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read `path` as an upright RGB uint8 array, or raise ImageError naming the problem."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(
                        f"{path}: header claims {w}x{h} pixels, over the limit of "
                        f"{max_pixels:,} (possible decompression bomb)")
                if min(w, h) < MIN_SIDE:
                    raise ImageError(f"{path}: image is {w}x{h} pixels; at least "
                                     f"{MIN_SIDE}x{MIN_SIDE} is needed to explain it")
                im.load()
                return to_rgb(ImageOps.exif_transpose(im))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: image too large, possible decompression bomb ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: truncated or corrupt image data ({e})") from None


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
    problem; a directory with no images is an error.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*")
                           if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ExplainError(f"{p}: directory contains no images "
                                   f"({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        else:
            out.append(p)
    return out
