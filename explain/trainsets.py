"""Training/evaluation sets behind one interface: `loader(...)` yields dict batches
{"x": (B, C, H, W) normalised, "y": (B,)} plus optional per-sample extras.

Array sets (Fashion-MNIST and its variants) are batched straight from memory
(`__getitems__`); ImageFolders are decoded in DataLoader workers. Feature views (written
by explain.distil) hold, per augmented view of a photo, the features of a frozen feature
extractor and a teacher's logits: "x" is then g(x), not an image.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from safetensors.torch import load_file

from .datasets import SYNTHETIC, ArrayData, load_named
from .errors import ExplainError, ImageError
from .images import IMAGE_SUFFIXES, load_image
from .paths import display
from .preprocess import IMAGENET, InputSpec

log = logging.getLogger(__name__)


class SeededBatches:
    """Batch sampler: permutation seeded by (seed, epoch), sharded by rank, from `start`."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0,
                 rank: int = 0, world: int = 1):
        self.n, self.bs, self.seed, self.epoch = n, batch_size, seed, epoch
        self.start, self.rank, self.world = start, rank, world

    def __len__(self) -> int:
        return math.ceil(self.n / self.bs) - self.start

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        for b in range(self.start, math.ceil(self.n / self.bs)):
            chunk = perm[b * self.bs:(b + 1) * self.bs]
            yield chunk[self.rank::self.world].tolist()


class TrainSet(Dataset):
    """`features`: the architecture whose frozen feature extractor computed the batches'
    "x" (no augmentation then, and the network is called with from_features=True); None:
    "x" are images. `loss`: the loss the data calls for (a key of explain.losses.LOSSES;
    None: the architecture's own). `measures`: what top-1 against "y" measures. `domain`:
    what a model trained on it knows (explain.domain; None: read off the data's name)."""
    classes: list[str]
    input: InputSpec
    features: str | None = None
    loss: str | None = None
    measures: str = "accuracy"
    domain: dict | None = None

    def loader(self, batch_size: int, seed: int, epoch: int, start: int = 0, rank: int = 0,
               world: int = 1, workers: int = 0, shuffle: bool = True) -> Iterable[dict]:
        if shuffle:
            sampler = SeededBatches(len(self), batch_size, seed, epoch, start, rank, world)
        else:
            idx = list(range(rank, len(self), world))
            sampler = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
        return DataLoader(self, batch_sampler=sampler, num_workers=workers,
                          collate_fn=self.collate, persistent_workers=False)

    def num_batches(self, batch_size: int) -> int:
        """Batches in one epoch of `loader` (sets with their own schedule override it)."""
        return math.ceil(len(self) / batch_size)

    def collate(self, items):  # overridden where items are single samples
        return items


class ArraySet(TrainSet):
    """An ArrayData as normalised tensors; `extras` are per-sample arrays added to batches."""

    def __init__(self, data: ArrayData, extras: dict[str, np.ndarray] | None = None,
                 mean: float | None = None, std: float | None = None):
        """`mean`/`std` override the data's own normalisation (a test set uses its training
        set's)."""
        self.data = data
        self.classes = data.classes
        self.mean = data.mean if mean is None else mean
        self.std = data.std if std is None else std
        h, w = data.images.shape[1:]
        self.input = InputSpec(size=(h, w), channels=1, mean=(self.mean,), std=(self.std,))
        self.images = torch.from_numpy(np.array(data.images, copy=True))
        self.labels = torch.from_numpy(data.labels).long()
        self.extras = {k: torch.from_numpy(np.asarray(v)) for k, v in (extras or {}).items()}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, idx: list[int]) -> dict:
        i = torch.as_tensor(idx, dtype=torch.long)
        x = self.images[i].unsqueeze(1).float().div_(255)
        x = (x - self.mean) / self.std
        return {"x": x, "y": self.labels[i], "index": i,
                **{k: v[i] for k, v in self.extras.items()}}


class FolderSet(TrainSet):
    """An ImageFolder (one sub-folder per class). Unreadable images and empty classes are
    skipped with a warning and counted (`skipped`)."""

    def __init__(self, files: list[tuple[Path, int]], classes: list[str], spec: InputSpec):
        self.files, self.classes, self.input = files, classes, spec

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[i]
        x, _, _ = self.input(load_image(path))
        return x, label

    def collate(self, items):
        return {"x": torch.stack([x for x, _ in items]),
                "y": torch.tensor([y for _, y in items], dtype=torch.long)}


VIEWS = "views.json"


class FeatureViews(TrainSet):
    """One split ("train" or "test") of a feature-view folder (explain.distil): per view
    the frozen features g (float16) and the teacher's logits; the label is the teacher's
    top-1, so accuracy on it is top-1 agreement with the teacher."""
    loss = "distil"
    measures = "teacher_agreement"

    def __init__(self, root: Path, split: str, limit: int | None = None):
        meta = read_views(root)
        if not meta.get("complete"):
            raise ExplainError(f"{root}: incomplete feature views (run the command that "
                               f"wrote them again: {meta.get('command') or 'explain distil-views'})",
                               param="data")
        self.features, self.classes = meta["arch"], list(meta["classes"])
        self.domain = meta.get("domain")
        self.input = InputSpec.from_dict(meta["input"])
        shards = [load_file(str(root / name)) for name in meta["shards"][split]]
        if not shards:
            raise ExplainError(f"{root}: no {split} views", param="data")
        self.g = torch.cat([s["g"] for s in shards])[:limit]
        self.teacher = torch.cat([s["teacher"] for s in shards])[:limit]
        self.labels = self.teacher.argmax(1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, idx: list[int]) -> dict:
        i = torch.as_tensor(idx, dtype=torch.long)
        return {"x": self.g[i].float(), "y": self.labels[i], "teacher": self.teacher[i].float()}


def read_views(root: Path) -> dict:
    """The description of a feature-view folder (arch, classes, input, shards per split)."""
    try:
        return json.loads((root / VIEWS).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ExplainError(f"{root / VIEWS}: unreadable ({e})", param="data") from None


def scan_folder(root: Path, classes: list[str] | None = None) -> tuple[list[tuple[Path, int]], list[str], int]:
    """(files with labels, class names, number skipped). Each image is decoded once here so
    that corrupt files are found before training, not in the middle of an epoch."""
    if not root.is_dir():
        raise ExplainError(f"{root} is not a directory", param="data")
    found = sorted(d.name for d in root.iterdir() if d.is_dir())
    classes = classes or found
    if not classes:
        raise ExplainError(f"{root} has no class sub-folders (ImageFolder layout: "
                           f"{root}/CLASS/IMAGE.jpg)", param="data")
    files, skipped = [], 0
    for label, name in enumerate(classes):
        try:
            with os.scandir(root / name) as entries:
                imgs = sorted(Path(e.path) for e in entries
                              if Path(e.name).suffix.lower() in IMAGE_SUFFIXES)
        except FileNotFoundError:  # a class the held-out folder lacks
            imgs = []
        except OSError as e:
            log.warning("skipped %s: folder cannot be read (%s)", display(root / name),
                        e.strerror or e)
            skipped += 1
            continue
        if not imgs:
            log.warning("%s: class %r has no images", root / name, name)
        for p in imgs:
            try:
                load_image(p)
            except ImageError as e:
                log.warning("skipped %s", e)
                skipped += 1
                continue
            files.append((p, label))
    if skipped:
        log.warning("%s: skipped %d unreadable image(s)", root, skipped)
    if not files:
        raise ExplainError(f"{root} holds no readable images", param="data")
    return files, classes, skipped


def load_trainset(data: str, seed: int = 0, spec: InputSpec = IMAGENET,
                  limit: int | None = None) -> tuple[TrainSet, TrainSet]:
    """(train, test) for a named synthetic set or an ImageFolder directory.

    An ImageFolder with `train/` and `val/` (or `test/`) sub-folders uses them; otherwise a
    seeded 90/10 split of its images is held out for testing. `limit` keeps the first N
    training samples (the test set stays whole).
    """
    if data in SYNTHETIC:
        train = load_named(data, "train", seed, limit)
        test = load_named(data, "test", seed)
        return ArraySet(train), ArraySet(test, mean=train.mean, std=train.std)
    root = Path(data)
    if (root / VIEWS).is_file():
        return FeatureViews(root, "train", limit), FeatureViews(root, "test")
    held = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if (root / "train").is_dir() and held is not None:
        tr, classes, _ = scan_folder(root / "train")
        te, _, _ = scan_folder(held, classes)
        return FolderSet(tr[:limit], classes, spec), FolderSet(te, classes, spec)
    if not root.exists():
        raise ExplainError(f"{data!r} is neither a known data set "
                           f"({', '.join(SYNTHETIC)}) nor a directory", param="data")
    files, classes, _ = scan_folder(root)
    order = np.random.default_rng(seed).permutation(len(files))
    n_test = max(1, len(files) // 10) if len(files) > 1 else 0
    test = [files[i] for i in order[:n_test]]
    train = [files[i] for i in order[n_test:]][:limit]
    return FolderSet(train, classes, spec), FolderSet(test or train, classes, spec)
