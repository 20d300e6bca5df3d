"""Overlay rendering and PNG writing on a thread pool, overlapped with the model.

The colour mapping (torch), PNG encoding (OpenCV) and file writes all release the GIL, so a
few threads keep up with the forward/backward passes of the main thread. At most `depth`
batches are in flight: when the pool falls behind, the model waits, and memory stays flat.
"""
from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from explain.atomic import atomic_write_files
from explain.errors import ExplainError
from explain.explanation import Explanation
from explain.paths import display
from explain.render import png_bytes, tiles, upscale_views

from .background import lower_priority

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
                expl: dict[str, Explanation]) -> list[dict]:
    """Write the input tile and one overlay per method for each row; fill in their paths."""
    drawn = {INPUT: upscale_views(views, style.size)}
    drawn.update({m: tiles(e, views, style.size, style.alpha, style.cmap)
                  for m, e in expl.items()})
    files = []
    for key, full in drawn.items():
        thumbs = upscale_views(full, style.thumb) if style.size > style.thumb else None
        for i, row in enumerate(rows):
            row["files"][key] = row["thumbs"][key] = tile_path("full", key, row["id"])
            files.append((out / row["files"][key], _png(full[i])))
            if thumbs is not None:
                row["thumbs"][key] = tile_path("thumb", key, row["id"])
                files.append((out / row["thumbs"][key], _png(thumbs[i])))
    try:
        # Atomic without fsync: the journal line written after them vouches for the files.
        atomic_write_files(files)
    except OSError as e:
        raise ExplainError(f"{display(out)}: cannot write {display(e.filename)} "
                           f"({e.strerror or e})", param="out") from None
    return rows


class RowWriter:
    """Submit a batch's rows, views and maps; collect finished rows in submission order."""

    def __init__(self, out: Path, style: Style, threads: int = 2, depth: int = 4):
        self.out, self.style, self.depth = out, style, depth
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="gallery-render",
                                       initializer=lower_priority)
        self.pending: collections.deque[Future] = collections.deque()

    def submit(self, rows: list[dict], views: torch.Tensor, expl: dict[str, Explanation]
               ) -> list[dict]:
        """Queue a batch; returns the rows of earlier batches that have finished meanwhile
        (waiting for the oldest when `depth` batches are already in flight)."""
        for row in rows:
            row.setdefault("files", {})
            row.setdefault("thumbs", {})
        self.pending.append(self.pool.submit(render_rows, self.out, self.style, rows, views, expl))
        done = []
        while self.pending and (self.pending[0].done() or len(self.pending) > self.depth):
            done.extend(self.pending.popleft().result())
        return done

    def close(self) -> list[dict]:
        """Wait for everything in flight; its rows."""
        done = []
        try:
            while self.pending:
                done.extend(self.pending.popleft().result())
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        return done
