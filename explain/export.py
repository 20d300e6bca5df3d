"""Built-in data sets written out as an ImageFolder, so that the images a user explains,
edits and fine-tunes on are ordinary files: OUT/<class>/<split>_<index>.png, and, where the
data set has them, the ground-truth masks (the decoy patch, the pasted object) as
MASKS/<class>/<split>_<index>.png (white = the region), named after their images so that
`explain edit --from-masks MASKS` finds them."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .atomic import atomic_write_files
from .datasets import ArrayData


def class_folder(name: str) -> str:
    """A class name as a folder name ("T-shirt/top" -> "t_shirt_top"); the edit store and
    fine-tuning match folders to classes without case and punctuation."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _png(a: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", a)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def export_images(data: ArrayData, split: str, out: str | os.PathLike,
                  masks: str | os.PathLike | None = None, chunk: int = 500) -> Iterator[int]:
    """Write every image of `data` (and its mask, when `masks` is given and the data set has
    masks); yields the number written after each chunk (for a progress bar). Each file is
    written whole (temp file + rename)."""
    out = Path(out)
    folders = [class_folder(c) for c in data.classes]
    for start in range(0, len(data), chunk):
        files = []
        for i in range(start, min(start + chunk, len(data))):
            rel = Path(folders[int(data.labels[i])]) / f"{split}_{i:05d}.png"
            files.append((out / rel, _png(data.images[i])))
            if masks is not None and data.masks is not None:
                files.append((Path(masks) / rel, _png(data.masks[i].astype(np.uint8) * 255)))
        atomic_write_files(files)
        yield min(start + chunk, len(data)) - start
