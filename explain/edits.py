"""The edit store: a folder of edited attention maps that fine-tuning reads.

    EDITS/manifest.json            {"format": 1, "edits": {key: entry}}
    EDITS/maps/KEY.rN.png          the edited map M' (16-bit grayscale, model input size)
    EDITS/maps/KEY.rN.original.png the model's own map M(x) when the edit was made

An entry records the image path and its SHA-256, the model id, the label, the revision and
the time. Every save writes new revision files first and switches the manifest atomically
afterwards, so a crash mid-save leaves the previous edit intact; old revisions are removed
only once the manifest no longer names them, and what a killed save left behind (temp files,
map files of a revision the manifest never named) when the store is next opened. One
store-wide lock (flock on EDITS/.lock)
serialises saves across threads and processes: the manifest is shared by every image, so a
lock per image alone would not protect it, and a save takes about a millisecond.

Maps are stored at the model's input resolution in edit units (`MapScale`): M(x)'s values
mapped from the model's map range [lo, hi] onto [0, 1] -- for an ABN that learnt its map the
raw M(x) itself, not min-max normalised, so "remove" (-> 0) and "add" (-> 1) mean the same in
the editor, here and in the map loss (which compares M(x) with `MapScale.raw` of the edit).
Edits also come from grayscale PNGs (`import_files`, mode "map") or from mask files (modes
"remove": M' = M * (1 - E), "add": M' = max(M, E)), in the same units.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal, TypeVar

import cv2
import numpy as np
import torch

from .atomic import atomic_write_bytes, atomic_write_text
from .errors import ExplainError
from .explanation import upsample
from .images import find_images, path_id
from .labels import class_key, class_lookup
from .methods import Explainer
from .pipeline import prepare
from .model import Model

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

FORMAT = 1
MANIFEST = "manifest.json"
MAP_FILE = re.compile(r"[A-Za-z0-9_-]+-[0-9a-f]{10}\.r[0-9]+(\.original)?\.png")
TEMP = re.compile(r"\.(.+)\.[a-z0-9_]+\.tmp")  # explain.atomic's temp file for NAME
ImportMode = Literal["map", "remove", "add"]


@dataclass(frozen=True)
class Edit:
    """One manifest entry. File names are relative to the store folder."""
    key: str
    image: str
    image_sha256: str
    model: str
    label: int | None
    size: tuple[int, int]  # (H, W) of the map files: the model's input size
    edited: str
    original: str
    revision: int
    time: str
    source: str = "editor"

    @classmethod
    def from_dict(cls, d: dict) -> "Edit":
        return cls(**{**d, "size": tuple(d["size"])})


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_id(model: Model) -> str:
    """Name plus a digest of the weights: edits made with other weights are told apart."""
    h = hashlib.sha256()
    for name, t in sorted(model.net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return f"{model.name}@{h.hexdigest()[:16]}"


def edit_key(image: str | os.PathLike) -> str:
    """A file-name-safe key: the image stem plus a digest of its absolute path (no dots, as
    stores have always been keyed)."""
    return path_id(image, safe="A-Za-z0-9_-")


def encode_map(m: np.ndarray) -> bytes:
    """(H, W) float in [0, 1] -> 16-bit grayscale PNG."""
    q = np.round(np.clip(np.nan_to_num(m, nan=0.0), 0, 1) * 65535).astype(np.uint16)
    ok, buf = cv2.imencode(".png", q)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def read_map_file(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """A grayscale map or mask file (PNG of any bit depth or colour, or .npy) -> float32
    (H, W) in [0, 1], resized to `size` (H, W) when given."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ExplainError(f"{path}: not a readable .npy map ({e})") from None
        a = np.squeeze(a)
        if a.dtype == np.uint8:
            a = a / 255.0
    else:
        raw = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED) \
            if path.is_file() else None
        if raw is None:
            raise ExplainError(f"{path}: not a readable image")
        if raw.ndim == 3:
            raw = cv2.cvtColor(raw, cv2.COLOR_BGRA2GRAY if raw.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
        a = raw / float(np.iinfo(raw.dtype).max) if raw.dtype.kind in "ui" else raw
    if a.ndim != 2:
        raise ExplainError(f"{path}: expected a single-channel 2-D map, got shape {a.shape}")
    a = np.asarray(a, np.float32)
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ExplainError(f"{path}: map values must be finite and within [0, 1]")
    if size is not None and a.shape != tuple(size):
        a = cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(a, 0, 1)


def editable_map(model: Model) -> str:
    """The native map of `model` that edits change: the one its architecture declares it
    re-scores with (explain.capabilities)."""
    if model.caps.rescore is None:
        raise ExplainError(f"{model.name}: not an Attention Branch Network (its architecture "
                           "declares no map the prediction can be re-scored with); edits are "
                           "made on such maps (e.g. the embedded model abn)", param="model")
    return model.caps.rescore


@dataclass(frozen=True)
class MapScale:
    """Edit units: the model's map range [lo, hi] (the ABN's `map_range()`) onto [0, 1].
    An ABN whose map is held near 0.5 (the ImageNet ABN) would show a flat map in the
    editor, and "remove" -> 0 would ask for values its map never takes; in these units
    every ABN's map spans the editor's colour scale. (0, 1): the raw M(x)."""
    lo: float = 0.0
    hi: float = 1.0

    def units(self, m: ArrayT) -> ArrayT:
        return ((m - self.lo) / (self.hi - self.lo)).clip(0, 1)

    def raw(self, u: ArrayT) -> ArrayT:
        return self.lo + u * (self.hi - self.lo)


def map_scale(model: Model) -> MapScale:
    return MapScale(*model.net.map_range())


def model_maps(model: Model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """M(x) of an ABN in edit units (`MapScale`; not min-max normalised) at input
    resolution (B, H, W), and the class probabilities (B, K), from one forward pass."""
    with Explainer(model, editable_map(model)) as ex:
        expl = ex(x)
    return (map_scale(model).units(upsample(expl.raw, tuple(x.shape[-2:]))[:, 0]).cpu(),
            expl.probs.cpu())


class EditStore:
    """A folder of edits (see module doc). Reads are lock-free; saves hold the store lock."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ExplainError(f"{self.root} exists and is not a folder", param="edits")
        self._sweep()

    def _sweep(self) -> None:
        """Remove what a killed save left: temp files, and map files of a revision the
        manifest does not name. Under the store lock, so a save under way elsewhere is left
        alone; skipped when the store cannot be locked (read-only) or its manifest is
        unreadable. Files of other names are never touched."""
        if not self.root.is_dir():
            return
        try:
            with self._lock():
                named = {n for e in self.entries().values() for n in (e.edited, e.original)}
                for f in self._leftovers(named):
                    f.unlink(missing_ok=True)
        except (OSError, ExplainError):
            return

    def _leftovers(self, named: set[str]) -> Iterator[Path]:
        yield from self.root.glob(f".{MANIFEST}.*.tmp")
        for f in self.root.glob("maps/*"):
            temp = TEMP.fullmatch(f.name)
            if MAP_FILE.fullmatch(temp.group(1) if temp else f.name) and (
                    temp or f"maps/{f.name}" not in named):
                yield f

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def entries(self) -> dict[str, Edit]:
        path = self.root / MANIFEST
        if not path.is_file():
            return {}
        try:
            doc = json.loads(path.read_text())
            if doc.get("format", 0) > FORMAT:
                raise ExplainError(f"{path}: written by a newer version (format "
                                   f"{doc['format']}, this one reads {FORMAT})")
            return {k: Edit.from_dict(v) for k, v in doc["edits"].items()}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ExplainError(f"{path}: corrupt edit manifest ({e}); it was left untouched")

    def load(self, edit: Edit) -> tuple[np.ndarray, np.ndarray]:
        """(original M(x), edited M'), each float32 (H, W) in [0, 1]."""
        return read_map_file(self.root / edit.original), read_map_file(self.root / edit.edited)

    def save(self, image: str | os.PathLike, model: str, label: int | None,
             original: np.ndarray, edited: np.ndarray, source: str = "editor") -> Edit:
        """Store `edited` for `image` as a new revision and return its entry."""
        image = Path(image).resolve()
        if original.shape != edited.shape or original.ndim != 2:
            raise ExplainError(f"{image}: edited map {edited.shape} and original map "
                               f"{original.shape} must be the same 2-D size")
        key = edit_key(image)
        digest = file_sha256(image)
        with self._lock():
            entries = self.entries()
            prev = entries.get(key)
            rev = prev.revision + 1 if prev else 1
            edit = Edit(key, str(image), digest, model, label, tuple(edited.shape),
                        f"maps/{key}.r{rev}.png", f"maps/{key}.r{rev}.original.png", rev,
                        time.strftime("%Y-%m-%dT%H:%M:%S%z"), source)
            entries[key] = edit
            doc = {"format": FORMAT, "edits": {k: asdict(e) for k, e in sorted(entries.items())}}
            try:
                atomic_write_bytes(self.root / edit.edited, encode_map(edited))
                atomic_write_bytes(self.root / edit.original, encode_map(original))
                atomic_write_text(self.root / MANIFEST, json.dumps(doc, indent=1) + "\n")
            except BaseException:
                self._remove(edit)  # the manifest still names the previous revision
                raise
            if prev:
                self._remove(prev)
        return edit

    def _remove(self, edit: Edit) -> None:
        for name in (edit.edited, edit.original):
            with contextlib.suppress(FileNotFoundError):
                (self.root / name).unlink()

    def find(self, image: str | os.PathLike) -> Edit | None:
        """The entry for `image`: by path, else (the folder moved) by content hash."""
        entries = self.entries()
        hit = entries.get(edit_key(image))
        if hit is None and entries:
            digest = file_sha256(image)
            hit = next((e for e in entries.values() if e.image_sha256 == digest), None)
        return hit

    def problem(self, edit: Edit, model: str, image: str | os.PathLike | None = None) -> str | None:
        """Why `edit` must not be applied for `model` (None when it may)."""
        path = Path(image or edit.image)
        if edit.model != model:
            return f"edit of {path.name} was made with model {edit.model}, not {model}"
        if not path.is_file():
            return f"edit of {path.name}: the image {path} no longer exists"
        if file_sha256(path) != edit.image_sha256:
            return f"edit of {path.name}: the image changed since it was edited (hash mismatch)"
        for name in (edit.edited, edit.original):
            if not (self.root / name).is_file():
                return f"edit of {path.name}: map file {self.root / name} is missing"
        return None

    def usable(self, model: str) -> tuple[list[Edit], list[str]]:
        """Edits that may be applied with `model`, and one warning per edit that may not."""
        good, warnings = [], []
        for edit in self.entries().values():
            why = self.problem(edit, model)
            (warnings.append(why) if why else good.append(edit))
        return good, warnings


def folder_labels(paths: list[Path], roots: list[str], classes: list[str]) -> list[int | None]:
    """Labels from an ImageFolder layout: the image's parent folder names a class
    (compared without case and punctuation, so `t_shirt_top` matches "T-shirt/top")."""
    index = class_lookup(classes)
    dirs = [Path(r).resolve() for r in roots if Path(r).is_dir()]
    labels = []
    for p in paths:
        parent = p.resolve().parent
        in_class_folder = any(d in parent.parents for d in dirs)
        labels.append(index.get(class_key(parent.name)) if in_class_folder else None)
    return labels


def match_files(images: list[Path], folder: Path) -> tuple[dict[Path, Path], list[Path]]:
    """Map/mask files named after their images (FOLDER/**/<stem>.png or .npy): the matches,
    and the images whose stem names several files (ambiguous, not used)."""
    if not folder.is_dir():
        raise ExplainError(f"{folder}: not a folder of map or mask files")
    by_stem: dict[str, list[Path]] = {}
    for f in sorted(folder.rglob("*")):
        if f.suffix.lower() in (".png", ".npy"):
            by_stem.setdefault(f.stem, []).append(f)
    found = {img: by_stem[img.stem][0] for img in images if len(by_stem.get(img.stem, [])) == 1}
    return found, [img for img in images if len(by_stem.get(img.stem, [])) > 1]


def import_files(store: EditStore, model: Model, inputs: list[str], folder: str | os.PathLike,
                 mode: ImportMode = "map", batch_size: int = 64) -> tuple[int, list[str]]:
    """Turn map files (mode "map") or mask files (modes "remove"/"add") named after images
    in `inputs` into edits; images without a file get none. Returns (number stored, one
    message per image that has a file but could not be imported)."""
    images = find_images(inputs)
    files, ambiguous = match_files(images, Path(folder))
    if not files and not ambiguous:
        raise ExplainError(f"{folder}: no map/mask file is named after an image of "
                           f"{', '.join(inputs)} (expected IMAGE_STEM.png or .npy)")
    problems = [f"{p}: several files in {folder} are named {p.stem}.*; not imported"
                for p in ambiguous]
    labels = dict(zip(images, folder_labels(images, inputs, model.classes)))
    mid = model_id(model)
    todo = [p for p in images if p in files]
    stored = 0
    for start in range(0, len(todo), batch_size):
        batch, errors = prepare(model, todo[start:start + batch_size])
        problems += [msg for _, msg in errors]
        if batch is None:
            continue
        originals = model_maps(model, batch.x)[0].numpy()
        for path, m in zip(batch.paths, originals):
            try:
                f = read_map_file(files[path], m.shape)
            except ExplainError as e:
                problems.append(str(e))
                continue
            edited = {"map": f, "remove": m * (1 - f), "add": np.maximum(m, f)}[mode]
            store.save(path, mid, labels[path], m, edited, source=f"{mode}-file:{files[path]}")
            stored += 1
    return stored, problems
