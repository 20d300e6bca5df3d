"""What `explain eval` measures on: batches of model inputs with their ground truth.

- A named synthetic set (Cluttered-/Decoy-FashionMNIST): the object's box (or pixel mask)
  is the region the pointing games look for; the decoy patch is the wrong-reason region WR
  looks at. Images are fed at the set's own size, normalised as the model's card says.
- An image folder, optionally with a boxes file (JSON `{"image": [x0, y0, x1, y1] or a list
  of boxes}` or CSV rows `image,x0,y0,x1,y1`, paths relative to the folder, pixels of the
  original image): boxes are carried through the model's resize/crop onto its input.
"""
from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..datasets import ArrayData
from ..errors import ExplainError
from ..images import find_images
from ..labels import class_key, class_lookup
from ..pipeline import prepare
from ..preprocess import Geometry, InputSpec
from ..model import Model
from .localisation import box_masks

DECOY = "decoy-fmnist"
log = logging.getLogger(__name__)


@dataclass
class EvalBatch:
    x: torch.Tensor                 # (B, C, H, W), normalised as the model expects
    labels: torch.Tensor            # (B,) ground-truth class index, -1 where unknown
    regions: torch.Tensor | None    # (B, H, W) bool: where the object is (pointing games)
    decoys: torch.Tensor | None     # (B, H, W) bool: a wrong-reason region (WR)


@dataclass
class Source:
    name: str
    size: int
    batches: Callable[[], Iterator[EvalBatch]]
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, problem)
    notes: list[str] = field(default_factory=list)


def array_inputs(images: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """uint8 grayscale (B, H, W) -> (B, C, H, W) normalised by `spec` (at the images' size)."""
    x = torch.tensor(images, dtype=torch.float32).div_(255)[:, None]  # a copy: may be read-only
    if spec.invert:
        x = 1.0 - x
    x = x.expand(-1, spec.channels, -1, -1)
    mean = torch.tensor(spec.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def array_source(data: ArrayData, spec: InputSpec, batch_size: int = 64, gt: str = "box",
                 limit: int | None = None) -> Source:
    """The first `limit` images of `data`; `gt` box or mask: the object's ground truth."""
    if limit:
        data = data.subset(slice(0, limit))
    size = tuple(data.images.shape[1:])

    def batches() -> Iterator[EvalBatch]:
        for s in range(0, len(data), batch_size):
            part = data.subset(slice(s, s + batch_size))
            masks = None if part.masks is None else torch.from_numpy(part.masks)
            regions = decoys = None
            if data.name == DECOY:
                decoys = masks
            elif gt == "mask" and masks is not None:
                regions = masks
            elif part.boxes is not None:
                regions = box_masks(torch.from_numpy(part.boxes), size)[0]
            yield EvalBatch(array_inputs(part.images, spec), torch.from_numpy(part.labels).long(),
                            regions, decoys)

    notes = []
    if size != tuple(spec.size):
        notes.append(f"{data.name} images are {size[1]}x{size[0]}; the model was trained at "
                     f"{spec.size[1]}x{spec.size[0]}: they are fed at their own size")
    return Source(data.name, len(data), batches, notes=notes)


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ExplainError(f"{where}: {text!r} is not a number", param="boxes") from None


def read_boxes(path: str | Path, root: Path) -> dict[Path, list[tuple[float, ...]]]:
    """Boxes per image (resolved path) from a JSON or CSV file; see the module doc."""
    path = Path(path)
    if not path.is_file():
        raise ExplainError(f"{path}: no such file", param="boxes")
    out: dict[Path, list[tuple[float, ...]]] = {}

    def add(name: str, box: list, where: str) -> None:
        if len(box) != 4:
            raise ExplainError(f"{where}: expected 4 numbers x0, y0, x1, y1, got {len(box)}",
                               param="boxes")
        p = Path(name)
        key = (p if p.is_absolute() else root / p).resolve()
        out.setdefault(key, []).append(tuple(_number(str(v), where) for v in box))

    if path.suffix.lower() == ".json":
        try:
            table = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ExplainError(f"{path}: not valid JSON ({e})", param="boxes") from None
        if not isinstance(table, dict):
            raise ExplainError(f"{path}: expected an object {{image: box or [boxes]}}",
                               param="boxes")
        for name, boxes in table.items():
            where = f"{path}: {name}"
            if not isinstance(boxes, list):
                raise ExplainError(f"{where}: expected [x0, y0, x1, y1] or a list of such boxes",
                                   param="boxes")
            for box in boxes if boxes and all(isinstance(b, list) for b in boxes) else [boxes]:
                add(name, box, where)
        return out
    with path.open(newline="") as f:
        for i, row in enumerate(csv.reader(f), start=1):
            if not row or (i == 1 and not re.match(r"^-?[\d.]+$", row[-1].strip())):
                continue  # blank line or header
            add(row[0], [v.strip() for v in row[1:]], f"{path} line {i}")
    return out


def input_box(box: tuple[float, ...], geom: Geometry, size: tuple[int, int]) -> list[float]:
    """A box in original-image pixels -> the same box in model-input pixels."""
    left, top, right, bottom = geom.box
    h, w = size
    sx, sy = w / (right - left), h / (bottom - top)
    return [(box[0] - left) * sx, (box[1] - top) * sy, (box[2] - left) * sx, (box[3] - top) * sy]


def folder_source(model: Model, root: str | Path, boxes: str | Path | None = None,
                  batch_size: int = 32, limit: int | None = None) -> Source:
    """Images under `root` (recursively). A parent folder named like one of the model's
    classes gives the label. Unreadable images are reported in `failed` and skipped."""
    root = Path(root)
    if not root.is_dir():
        raise ExplainError(f"{root} is neither a known data set nor a directory", param="data")
    paths = find_images([str(root)])[:limit or None]
    classes = class_lookup(model.classes)
    table = read_boxes(boxes, root) if boxes else None
    source = Source(str(root), len(paths), lambda: iter(()))
    if table is not None:
        known = {p.resolve() for p in paths}
        unmatched = [p for p in table if p not in known]
        if unmatched:
            source.notes.append(f"boxes: {len(unmatched)} entr{'y' if len(unmatched) == 1 else 'ies'} "
                                f"name no image under {root} (e.g. {unmatched[0]})")

    def regions_for(batch_paths: list[Path], geoms: list[Geometry]) -> torch.Tensor:
        size = model.input.size
        masks = torch.zeros(len(batch_paths), *size, dtype=torch.bool)
        for i, (p, g) in enumerate(zip(batch_paths, geoms)):
            for box in table.get(p.resolve(), []):
                masks[i] |= box_masks(torch.tensor([input_box(box, g, size)]), size)[0][0]
        return masks

    def batches() -> Iterator[EvalBatch]:
        for s in range(0, len(paths), batch_size):
            batch, errors = prepare(model, paths[s:s + batch_size])
            for p, msg in errors:
                log.error(msg)
                source.failed.append((str(p), msg))
            if batch is None:
                continue
            labels = torch.tensor([classes.get(class_key(p.parent.name), -1) for p in batch.paths])
            regions = regions_for(batch.paths, batch.geometry) if table is not None else None
            yield EvalBatch(batch.x, labels, regions, None)

    source.batches = batches
    return source
