"""Datasets: Fashion-MNIST, its Cluttered and Decoy variants (generated deterministically from
a seed, ground truth kept with each sample), and any ImageFolder.

Array datasets hold uint8 images (N, H, W) in memory; `ArrayData` makes them a torch Dataset
of normalised tensors with optional per-sample ground truth (box, mask).
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .catalog import SYNTHETIC
from .errors import ExplainError

FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FMNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FMNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530


@dataclass
class ArrayData:
    """In-memory uint8 images with labels and optional ground truth.

    boxes: (N, 4) int (x0, y0, x1, y1), exclusive ends; masks: (N, H, W) bool.
    """
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str
    boxes: np.ndarray | None = None
    masks: np.ndarray | None = None
    mean: float = FMNIST_MEAN
    std: float = FMNIST_STD
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray | slice) -> "ArrayData":
        pick = (lambda a: None if a is None else a[idx])
        return ArrayData(self.images[idx], self.labels[idx], self.classes, self.name,
                         pick(self.boxes), pick(self.masks), self.mean, self.std, self.extra)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float images (N, 1, H, W) and labels (N,)."""
        x = torch.from_numpy(self.images).float().div_(255).unsqueeze(1)
        return (x - self.mean) / self.std, torch.from_numpy(self.labels).long()


def _fmnist_dir() -> Path | None:
    env = os.environ.get("EXPLAIN_FMNIST_DIR")
    for d in ([env] if env else []) + list(FMNIST_DIRS):
        if all((Path(d) / f).is_file() for f in FMNIST_FILES["train"] + FMNIST_FILES["test"]):
            return Path(d)
    return None


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(split: str = "train", limit: int | None = None) -> ArrayData:
    """Fashion-MNIST from Debian's `dataset-fashion-mnist`, else torchvision's downloader.
    `limit` keeps the first N samples."""
    d = _fmnist_dir()
    if d is not None:
        img_f, lab_f = FMNIST_FILES[split]
        images, labels = _read_idx(d / img_f), _read_idx(d / lab_f).astype(np.int64)
    else:
        from torchvision.datasets import FashionMNIST
        root = Path(os.environ.get("EXPLAIN_DATA", Path.home() / ".cache" / "explain" / "data"))
        try:
            ds = FashionMNIST(str(root), train=split == "train", download=True)
        except Exception as e:  # noqa: BLE001 - any download failure means the same to the user
            raise ExplainError("Fashion-MNIST not found: install Debian's dataset-fashion-mnist "
                               f"or allow torchvision to download it ({e})") from None
        images, labels = ds.data.numpy(), ds.targets.numpy().astype(np.int64)
    return ArrayData(np.ascontiguousarray(images[:limit]), labels[:limit], FMNIST_CLASSES,
                     "fashion-mnist")


def cluttered_fmnist(split: str = "train", seed: int = 0, canvas: int = 64,
                     fragments: int = 4, frag: int = 8, limit: int | None = None) -> ArrayData:
    """Each item pasted at a random spot of a `canvas`-px black canvas, plus `fragments`
    `frag`x`frag` pieces cut from other random items. Ground truth: the item's box and mask.
    Random draws are made for the whole split, so `limit` gives the full set's first N."""
    base = fashion_mnist(split)
    n_all, s = len(base), base.images.shape[1]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, 1])
    pos = rng.integers(0, canvas - s + 1, size=(n_all, 2))          # item (x, y)
    donors = rng.integers(0, n_all, size=(n_all, fragments))
    src = rng.integers(0, s - frag + 1, size=(n_all, fragments, 2))   # where fragments are cut
    dst = rng.integers(0, canvas - frag + 1, size=(n_all, fragments, 2))
    n = min(limit or n_all, n_all)
    images = np.zeros((n, canvas, canvas), np.uint8)
    masks = np.zeros((n, canvas, canvas), bool)
    boxes = np.zeros((n, 4), np.int64)
    for i in range(n):
        img = images[i]
        for k in range(fragments):
            (sx, sy), (dx, dy) = src[i, k], dst[i, k]
            piece = base.images[donors[i, k], sy:sy + frag, sx:sx + frag]
            np.maximum(img[dy:dy + frag, dx:dx + frag], piece, out=img[dy:dy + frag, dx:dx + frag])
        x, y = pos[i]
        item = base.images[i]
        np.maximum(img[y:y + s, x:x + s], item, out=img[y:y + s, x:x + s])
        m = item > 0
        masks[i, y:y + s, x:x + s] = m
        ys, xs = np.nonzero(m)
        boxes[i] = (x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1) if len(xs) \
            else (x, y, x + s, y + s)
    flat = images.reshape(n, -1).astype(np.float32) / 255
    return ArrayData(images, base.labels[:n], base.classes, "cluttered-fmnist", boxes, masks,
                     mean=float(flat.mean()), std=float(flat.std()))


def decoy_fmnist(split: str = "train", seed: int = 0, mult: int = 25,
                 limit: int | None = None) -> ArrayData:
    """Ross et al.'s decoy: a 4x4 patch in a random corner, gray `255 - mult*y` when training
    (y the label), `255 - mult*k` with k a random class at test. Mask = the patch."""
    base = fashion_mnist(split)
    n_all, s = len(base), base.images.shape[1]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, 2])
    corner_x = rng.random(n_all) > 0.5
    corner_y = rng.random(n_all) > 0.5
    level_of = base.labels if split == "train" else rng.integers(0, 10, size=n_all)
    n = min(limit or n_all, n_all)
    images = base.images[:n].copy()
    masks = np.zeros((n, s, s), bool)
    boxes = np.zeros((n, 4), np.int64)
    for i in range(n):
        x0 = 0 if corner_x[i] else s - 4
        y0 = 0 if corner_y[i] else s - 4
        images[i, y0:y0 + 4, x0:x0 + 4] = 255 - mult * int(level_of[i])
        masks[i, y0:y0 + 4, x0:x0 + 4] = True
        boxes[i] = (x0, y0, x0 + 4, y0 + 4)
    return ArrayData(images, base.labels[:n], base.classes, "decoy-fmnist", boxes, masks,
                     extra={"decoy_level": level_of[:n]})


def load_named(name: str, split: str, seed: int = 0, limit: int | None = None) -> ArrayData:
    builders = {"fashion-mnist": lambda: fashion_mnist(split, limit),
                "cluttered-fmnist": lambda: cluttered_fmnist(split, seed, limit=limit),
                "decoy-fmnist": lambda: decoy_fmnist(split, seed, limit=limit)}
    if name not in builders:
        raise ExplainError(f"unknown data set {name!r}; choose one of "
                           f"{', '.join(SYNTHETIC)} or give an ImageFolder directory", param="data")
    return builders[name]()
