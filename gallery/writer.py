"""A batch's tiles: the input and one overlay per method, rendered and written as PNGs
(run by the stream that explained the batch, gallery/streams.py)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from explain.atomic import write_journaled_files
from explain.errors import ExplainError
from explain.explanation import Explanation
from explain.paths import display
from explain.render import png_bytes, tiles, upscale_views

INPUT = "input"
SMALL = 64  # px: tiles up to this side are stored without compression


@dataclass(frozen=True)
class Style:
    """How tiles look: full side `size` (px), thumbnails of `thumb` px when smaller."""
    size: int
    alpha: float = 0.5
    cmap: str = "jet"
    thumb: int = 128


def tile_path(kind: str, key: str, row_id: str) -> str:
    """Relative path of a tile; `kind` is "full" or "thumb", `key` "input" or a method."""
    folder = ("inputs" if key == INPUT else f"overlays/{key}") if kind == "full" else f"thumbs/{key}"
    return f"{folder}/{row_id}.png"


def _png(tile: np.ndarray) -> bytes:
    # Small tiles are a few KB whatever the effort; skipping zlib halves the encoding time.
    return png_bytes(tile, compress=0 if tile.shape[0] <= SMALL else 1)


def render_rows(out: Path, style: Style, rows: list[dict], views: torch.Tensor,
                expl: dict[str, Explanation], turn: int = 0) -> list[dict]:
    """Write the input tile and one overlay per method for each row; fill in their paths.

    Tiles go folder by folder, starting at folder `turn` (mod their count): batches written
    at the same time by different streams, given consecutive turns, create their files in
    different folders rather than queueing on one folder's lock (3% of the CPU went to that
    spinning with 2 streams on ext4)."""
    drawn = {INPUT: upscale_views(views, style.size)}
    drawn.update({m: tiles(e, views, style.size, style.alpha, style.cmap)
                  for m, e in expl.items()})
    keys = list(drawn)
    keys = keys[turn % len(keys):] + keys[:turn % len(keys)]
    for row in rows:
        row.setdefault("files", {})
        row.setdefault("thumbs", {})
    root = os.fspath(out)
    files = []
    for key in keys:
        full = drawn[key]
        thumbs = upscale_views(full, style.thumb) if style.size > style.thumb else None
        for i, row in enumerate(rows):
            row["files"][key] = row["thumbs"][key] = tile_path("full", key, row["id"])
            files.append((os.path.join(root, row["files"][key]), _png(full[i])))
            if thumbs is not None:
                row["thumbs"][key] = tile_path("thumb", key, row["id"])
                files.append((os.path.join(root, row["thumbs"][key]), _png(thumbs[i])))
    try:
        write_journaled_files(files)  # the journal line written after them vouches for them
    except OSError as e:
        raise ExplainError(f"{display(out)}: cannot write {display(e.filename)} "
                           f"({e.strerror or e})", param="out") from None
    return rows
