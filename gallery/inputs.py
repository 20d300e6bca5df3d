"""What a gallery is made of: INPUT (a folder, a glob or a list file) -> ordered items.

A folder whose images all sit in sub-folders is read as an ImageFolder: the first sub-folder
is the ground-truth class, as in torchvision. A list file names one image a line (relative to
the list's folder), optionally followed by a tab and the class. Every item gets a stable id
from its absolute path, so output names survive `--resume`, other working folders and ranks.
Names are bytes to the OS: one that is not UTF-8 is carried as it is (surrogateescape) and
shown with backslash escapes (explain.paths).
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from explain.errors import ExplainError
from explain.images import IMAGE_SUFFIXES, find_images, path_id
from explain.labels import class_key, class_lookup
from explain.paths import display

GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Item:
    """One input image: its place in INPUT, where it is, how the page names it, its class."""
    index: int
    path: Path
    name: str
    truth: str | None = None

    @cached_property
    def id(self) -> str:
        """File-name-safe and unique: the stem plus a hash of the absolute path."""
        return path_id(self.path)


def _folder(root: Path) -> list[tuple[Path, str, str | None]]:
    """Its images; a sub-folder that cannot be listed comes as an entry of its own."""
    paths = find_images([str(root)])
    image_folder = not any(p.parent == root and not p.is_dir() for p in paths)
    out = []
    for p in paths:
        rel = p.relative_to(root)
        out.append((p, rel.as_posix(), rel.parts[0] if image_folder and len(rel.parts) > 1
                    else None))
    return out


def _list_file(listing: Path) -> list[tuple[Path, str, str | None]]:
    try:  # file names as the OS has them: bytes, whatever their encoding
        lines = os.fsdecode(listing.read_bytes()).splitlines()
    except OSError as e:
        raise ExplainError(f"{display(listing)}: cannot read the list of images "
                           f"({e.strerror or e})") from None
    out = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, label = line.partition("\t")
        p = Path(name.strip())
        out.append((p if p.is_absolute() else listing.parent / p, name.strip(),
                    label.strip() or None))
    return out


def _glob(pattern: str) -> list[tuple[Path, str, str | None]]:
    return [(Path(p), p, None) for p in sorted(glob.glob(pattern, recursive=True))
            if Path(p).is_file()]


def collect(spec: str, limit: int | None = None) -> list[Item]:
    """Items of INPUT `spec` in a stable order (duplicates dropped), at most `limit`."""
    source = Path(spec)
    if source.is_dir():
        found = _folder(source)
    elif source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        found = [(source, source.name, None)]
    elif source.is_file():
        found = _list_file(source)
    elif any(c in spec for c in GLOB_CHARS):
        found = _glob(spec)
    else:
        raise ExplainError(f"{display(spec)}: no such folder, image, list file or matching "
                           "glob", param="input")
    items: list[Item] = []
    seen: set[str] = set()
    for path, name, truth in found:
        item = Item(len(items), path, name, truth)
        if item.id not in seen:
            seen.add(item.id)
            items.append(item)
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise ExplainError(f"{display(spec)}: no images to put in a gallery", param="input")
    return items


@lru_cache(maxsize=8)
def _lookup(classes: tuple[str, ...]) -> dict[str, int]:
    return class_lookup(classes)  # once a model, not once a row


def class_index(truth: str | None, classes: list[str]) -> int | None:
    """The model's index for a ground-truth folder name: by name, ignoring case and
    punctuation (`t_shirt_top` = `T-shirt/top`), or a folder named by the index itself."""
    if truth is None:
        return None
    index = _lookup(tuple(classes)).get(class_key(truth))
    if index is not None:
        return index
    if truth.isdigit() and int(truth) < len(classes):
        return int(truth)
    return None
