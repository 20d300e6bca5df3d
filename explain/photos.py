"""Natural photographs available offline through the package registries, for distilling the
ImageNet ABN (explain.distil) and measuring it (benchmarks/photo_abn.py).

- Debian `opencv-doc`: OpenCV's sample photos (unlabelled; of its 26 chessboard shots for
  camera calibration, none);
- Debian `tuxpaint-stamps-default`: photo cut-outs with an alpha channel, in category
  folders (the clip-art folders, `symbols/` and `*/cartoon/`, are left out);
- scikit-image, scikit-learn and matplotlib sample photos, and scikit-image's textures;
- the `foolbox` wheel: 20 ImageNet validation JPEGs with the label in the file name
  (`imagenet_00_243.jpg` is class 243), read from the wheel file without importing foolbox.

The held-out split is a fixed rule on each file's name, so that training and the benchmark
agree without sharing state: one file in five of each source (by a hash of its name, pairs
of the same scene together), and every library sample photo and every labelled photo, is
never trained on.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ExplainError
from .images import load_image, to_rgb

OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
TUXPAINT = Path("/usr/share/tuxpaint/stamps")
CLIPART = re.compile(r"(^|/)(symbols|cartoon)(/|$)")
CALIBRATION = re.compile(r"^(left|right)\d+\.jpg$")  # 26 near-identical chessboard shots
SAMPLE_PHOTOS = {"skimage": ("data", ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                                      "motorcycle_left.png", "hubble_deep_field.jpg"]),
                 "sklearn": ("datasets/images", ["china.jpg", "flower.jpg"]),
                 "matplotlib": ("mpl-data/sample_data", ["grace_hopper.jpg"])}
TEXTURES = ("brick.png", "grass.png", "gravel.png")  # scikit-image
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
MIN_SIDE = 64
FOOLBOX_HINT = ("pip download foolbox --no-deps -d DIR, then pass DIR/foolbox-*.whl "
                "(or pip install foolbox)")


def group(relative: str) -> str:
    """Files that show the same thing share a group, so that the split keeps them together:
    stereo and before/after pairs (aloeL / aloeR, basketball1 / 2, box / box_in_scene),
    numbered stamp variants (frog / frog-1)."""
    folder, _, name = relative.rpartition("/")
    stem = re.split(r"[_\-]", name.rsplit(".", 1)[0])[0]
    return folder + "/" + (re.sub(r"(\d+|[LRAB])$", "", stem) or stem)


def held_out(relative: str) -> bool:
    """The fixed held-out rule: one group in five, by a hash of its group (see `group`)."""
    return hashlib.sha1(group(relative).encode()).digest()[0] % 5 == 0


@dataclass
class Photos:
    """Training and held-out files. Cut-outs have an alpha channel (the object's mask)."""
    train_photos: list[Path] = field(default_factory=list)
    train_cutouts: list[Path] = field(default_factory=list)
    held_photos: list[Path] = field(default_factory=list)
    held_cutouts: list[Path] = field(default_factory=list)
    textures: list[Path] = field(default_factory=list)


def _package_dir(module: str) -> Path | None:
    """Where an installed Python package lives, without importing it."""
    spec = importlib.util.find_spec(module)
    return Path(spec.origin).parent if spec and spec.origin else None


def _split(root: Path, files: list[Path], train: list[Path], held: list[Path]) -> None:
    for f in files:
        (held if held_out(f.relative_to(root).as_posix()) else train).append(f)


def _readable(files: list[Path]) -> list[Path]:
    """Files with both sides at least MIN_SIDE px (icons and masks are not photos)."""
    out = []
    for f in files:
        with Image.open(f) as im:
            if min(im.size) >= MIN_SIDE:
                out.append(f)
    return out


def require(path: Path, package: str) -> None:
    if not path.is_dir():
        raise ExplainError(f"the Debian package {package} is needed ({path} is missing): "
                           f"apt-get install {package}")


def collect() -> Photos:
    """Every source found on this machine; the two Debian packages are required (one line
    saying what to install when one is missing), the library samples are used when present."""
    require(OPENCV, "opencv-doc")
    require(TUXPAINT, "tuxpaint-stamps-default")
    photos = Photos()
    opencv = _readable(sorted(p for p in OPENCV.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES
                              and not CALIBRATION.match(p.name)))
    _split(OPENCV, opencv, photos.train_photos, photos.held_photos)
    stamps = sorted(p for p in TUXPAINT.rglob("*.png")
                    if not CLIPART.search(p.relative_to(TUXPAINT).parent.as_posix()))
    _split(TUXPAINT, _readable(stamps), photos.train_cutouts, photos.held_cutouts)
    photos.held_photos += sample_photos()
    base = _package_dir("skimage")
    photos.textures = [base / "data" / t for t in TEXTURES if base and (base / "data" / t).is_file()]
    return photos


def sample_photos() -> list[Path]:
    """The sample photos of scikit-image, scikit-learn and matplotlib that are installed."""
    out = []
    for module, (sub, names) in SAMPLE_PHOTOS.items():
        base = _package_dir(module)
        out += [base / sub / n for n in names if base and (base / sub / n).is_file()]
    return out


def labelled(source: str | os.PathLike | None = None) -> list[tuple[str, np.ndarray, int]]:
    """foolbox's 20 labelled ImageNet photos as (name, RGB array, class index), from a wheel
    file, an unpacked `foolbox/data` folder, or (None) the installed foolbox package."""
    path = Path(source) if source else _package_dir("foolbox")
    if path is None or not path.exists():
        raise ExplainError(f"foolbox's labelled ImageNet photos are needed: {FOOLBOX_HINT}",
                           param="foolbox")
    pattern = re.compile(r"imagenet_\d+_(\d+)\.jpg$")
    out = []
    if path.is_file():
        with zipfile.ZipFile(path) as z:
            for name in sorted(z.namelist()):
                m = pattern.search(name)
                if m:
                    with Image.open(io.BytesIO(z.read(name))) as im:
                        out.append((Path(name).name, to_rgb(im), int(m.group(1))))
    else:
        data = path / "data" if (path / "data").is_dir() else path
        for f in sorted(data.glob("imagenet_*.jpg")):
            m = pattern.search(f.name)
            if m:
                out.append((f.name, load_image(f), int(m.group(1))))
    if not out:
        raise ExplainError(f"{path} holds no imagenet_NN_LABEL.jpg files ({FOOLBOX_HINT})",
                           param="foolbox")
    return out
