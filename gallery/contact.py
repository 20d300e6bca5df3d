"""A contact sheet: the first rows of a gallery as one PNG (matplotlib), for a quick look
without a browser, e.g. in a report or a chat.

The tiles are laid out as one mosaic in a single axes: a grid of subplots would cost a
second or more of layout for a few dozen tiles.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from explain.atomic import atomic_write_bytes

from .writer import INPUT

SHEET = "contact-sheet.png"
MARKS = {True: " ✓", False: " ✗", None: ""}
CELL_IN, LABEL_IN, TITLE_IN = 1.3, 1.7, 0.6  # inches: a tile, the row labels, the titles


def _mosaic(out: Path, rows: list[dict], keys: list[str]) -> tuple[np.ndarray, int, int]:
    """Thumbnails (rows x keys) on a white grid; returns it, the tile side and the gap."""
    tiles = [[np.asarray(Image.open(out / r["thumbs"][k]).convert("RGB")) for k in keys]
             for r in rows]
    side = tiles[0][0].shape[0]
    gap = max(1, side // 14)
    step = side + gap
    grid = np.full((len(rows) * step - gap, len(keys) * step - gap, 3), 255, np.uint8)
    for i, line in enumerate(tiles):
        for j, tile in enumerate(line):
            grid[i * step:i * step + side, j * step:j * step + side] = tile
    return grid, side, gap


def write_contact_sheet(out: Path, settings: dict, rows: list[dict], count: int = 12
                        ) -> Path | None:
    """A grid of the first `count` readable rows: the input, then one overlay per method;
    its title says how many of how many rows it shows."""
    readable = [r for r in rows if not r.get("error")]
    rows = readable[:count]
    if not rows:
        return None
    shown = (f"first {len(rows)} of {len(readable)} rows; index.html has them all"
             if len(readable) > len(rows) else f"all {len(rows)} rows")
    keys = [INPUT] + settings["methods"]
    grid, side, gap = _mosaic(out, rows, keys)
    width, height = LABEL_IN + CELL_IN * len(keys), TITLE_IN + CELL_IN * len(rows)
    fig = Figure(figsize=(width, height), dpi=100)
    fig.suptitle(f"{settings['title']} ({shown})", fontsize=10, y=1 - 0.12 / height, va="top")
    ax = fig.add_axes((LABEL_IN / width, 0.05 / height, CELL_IN * len(keys) / width,
                       CELL_IN * len(rows) / height))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    step = side + gap
    for j, key in enumerate(keys):
        ax.text(j * step + side / 2, -gap, key, ha="center", va="bottom", fontsize=9)
    for i, row in enumerate(rows):
        ax.text(-2 * gap, i * step + side / 2,
                f"{row['name'][-24:]}\n{row['label']} {row['prob']:.0%}{MARKS[row.get('correct')]}",
                ha="right", va="center", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 1})  # fast: at the end of every run
    atomic_write_bytes(out / SHEET, buf.getvalue())
    return out / SHEET
