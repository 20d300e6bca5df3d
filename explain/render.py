"""Rendering: colormap lookup, alpha blend, contours, labelled pictures and panels. Pure
functions, vectorised over the batch with torch where they draw many tiles; uint8 only at
the end.

Two views of a spatial map: over the whole original photo at its own resolution
(`whole_image`: the part the model did not see washed out and outlined), or over the
square crop the model saw (`overlay`, batched: the gallery's tiles). `labelled` adds a
title, a caption and a colour legend; `panel` lays labelled tiles out in rows.
"""
from __future__ import annotations

import math
import os
import textwrap
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_write_bytes
from .explanation import Explanation
from .preprocess import Geometry

WASH = 0.6          # how far the photo outside the model's crop is faded to grey
MAX_SIDE = 4096     # whole-image overlays of larger photos are drawn at this longer side
MIN_SIDE = 224      # ... and of smaller ones (Fashion-MNIST's 28 px) scaled up to this one
View = Literal["full", "crop"]


@lru_cache(maxsize=16)
def colormap_lut(name: str = "jet") -> torch.Tensor:
    """(256, 3) float RGB in [0, 1] from a matplotlib colormap."""
    import matplotlib
    cmap = matplotlib.colormaps[name]
    return torch.from_numpy(cmap(np.linspace(0, 1, 256))[:, :3]).float()


def _as_float_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]."""
    t = torch.as_tensor(images)
    return t.permute(0, 3, 1, 2).float().div(255)


def resize_batch(t: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    size = (size, size) if isinstance(size, int) else size
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def colorize(maps: torch.Tensor, cmap: str = "jet") -> torch.Tensor:
    """(B, 1, H, W) in [0, 1] -> (B, 3, H, W) colours by table lookup."""
    idx = (maps[:, 0].clamp(0, 1) * 255).round().long()
    return colormap_lut(cmap).to(maps.device)[idx].permute(0, 3, 1, 2)


def overlay(views: np.ndarray | torch.Tensor, maps: torch.Tensor, alpha: float = 0.5,
            cmap: str = "jet", size: int | None = None, contour: bool = False) -> np.ndarray:
    """Blend colour-mapped `maps` (B, 1, h, w) over `views` uint8 (B, H, W, 3).

    Output uint8 (B, S, S, 3) with S = `size` or the view's size; with `contour`, the
    50% iso-line of each map is drawn in white.
    """
    img = _as_float_images(views)
    target = size or img.shape[-1]
    img = resize_batch(img, target)
    m = resize_batch(maps.detach().float().cpu(), tuple(img.shape[-2:]))
    out = (1 - alpha) * img + alpha * colorize(m, cmap)
    arr = (out.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).contiguous().numpy()
    if contour:
        masks = (m[:, 0] >= 0.5).byte().numpy()
        for a, mk in zip(arr, masks):
            cs, _ = cv2.findContours(mk, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(a, cs, -1, (255, 255, 255), max(1, a.shape[0] // 150))
    return arr


def bars(values: torch.Tensor, size: int = 224, cmap: str = "viridis") -> np.ndarray:
    """Bar charts of vectors (B, C) with values in [0, 1] (SE excitations), as uint8 tiles
    (B, S, S, 3): one bar per channel, coloured by value, on white with a grey line at 0.5.
    Channels are averaged in groups where there are more channels than pixel columns. From
    96 px on, the chart has axes: excitation 0, 0.5, 1 up the left, channels along the
    bottom."""
    v = values.detach().float().cpu().clamp(0, 1)
    if size < 96:
        return _bar_area(v, size, size, cmap)
    fs = max(10, size // 22)
    left, bottom, top = 3 * fs, 2 * fs + 6, fs // 2 + 2
    plot = _bar_area(v, size - left - 4, size - bottom - top, cmap)
    out = []
    for chart in plot:
        im = Image.new("RGB", (size, size), "white")
        im.paste(Image.fromarray(chart), (left, top))
        d = ImageDraw.Draw(im)
        h, w = chart.shape[:2]
        d.line([(left - 1, top), (left - 1, top + h), (left + w, top + h)], fill="black")
        for frac, text in ((1.0, "1"), (0.5, ".5"), (0.0, "0")):
            y = top + round((1 - frac) * (h - 1))
            d.line([(left - 4, y), (left - 1, y)], fill="black")
            d.text((left - 6, y), text, fill="black", font=_font(fs), anchor="rm")
        c = v.shape[1]
        d.text((left, top + h + 2), "0", fill="black", font=_font(fs), anchor="lt")
        d.text((left + w, top + h + 2), str(c - 1), fill="black", font=_font(fs), anchor="rt")
        d.text((left + w // 2, top + h + 2), "channel", fill="black", font=_font(fs), anchor="mt")
        out.append(np.asarray(im))
    return np.stack(out)


def _bar_area(v: torch.Tensor, width: int, height: int, cmap: str) -> np.ndarray:
    """The bars alone, (B, height, width, 3) uint8."""
    c = v.shape[1]
    cols = F.interpolate(v[:, None], size=width, mode="area" if c > width else "nearest")[:, 0]
    bar = torch.arange(width) * c // width
    gap = torch.zeros(width, dtype=torch.bool)
    if width >= 3 * c:  # wide bars: each starts with a white column
        gap[0], gap[1:] = True, bar[1:] != bar[:-1]
    bar_h = (cols * (height - 1)).round()                                  # (B, W)
    rows = torch.arange(height - 1, -1, -1).float()[:, None]               # height of row y
    filled = (rows < bar_h[:, None, :]) & ~gap                             # (B, H, W)
    colour = colormap_lut(cmap)[(cols * 255).round().long()]               # (B, W, 3)
    img = torch.ones(v.shape[0], height, width, 3)
    img[:, height // 2] = 0.75
    img = torch.where(filled[..., None], colour[:, None], img)
    return (img * 255).round().byte().numpy()


def tiles(e: Explanation, views: np.ndarray | torch.Tensor, size: int, alpha: float = 0.5,
          cmap: str = "jet", contour: bool = False) -> np.ndarray:
    """How every command draws an explanation on the crop the model saw: per image, its map
    blended over that view, or, for a vector explanation (SE excitations), its bar chart;
    uint8 tiles (B, size, size, 3)."""
    if e.kind == "vector":
        return bars(e.raw, size)
    out = overlay(views, e.maps, alpha, cmap, size, contour)
    if "query" in e.extras:
        mark(out, e.extras["query"].cpu() * out.shape[2] / e.maps.shape[-1])
    return out


def mark(tiles: np.ndarray, points: torch.Tensor) -> None:
    """Draw each tile's point (x, y) (B, 2), in tile pixels, as a white cross outlined in
    black (an attention map's query position)."""
    size = max(7, tiles.shape[2] // 16)
    for tile, (x, y) in zip(tiles, points.round().int().tolist()):
        for colour, width in (((0, 0, 0), 4), ((255, 255, 255), 2)):
            cv2.drawMarker(tile, (x, y), colour, cv2.MARKER_CROSS, size, max(1, width * tiles.shape[2] // 448))


def whole_image(image: np.ndarray, m: torch.Tensor, geometry: Geometry, alpha: float = 0.5,
                cmap: str = "jet", contour: bool = False, max_side: int = MAX_SIDE
                ) -> np.ndarray:
    """The map `m` ((h, w) or (1, h, w) in [0, 1], over the model's input) drawn on the
    whole original `image` (H, W, 3) uint8, at the image's own resolution (a longer side
    above `max_side` is scaled down to it, one below MIN_SIDE up): inside the box the model saw
    (`geometry.box`) the map is blended in as `overlay` does; outside it, where the model
    saw nothing, the photo is washed out to grey and the box is outlined."""
    image = fit(image, max_side, MIN_SIDE)
    height, width = image.shape[:2]
    scale = width / geometry.original_size[0]
    left, top, right, bottom = (c * scale for c in geometry.box)
    m = m.detach().float().cpu().reshape(1, 1, *m.shape[-2:])
    # Pixel centres of the original image in the map's coordinates (-1..1 across the box).
    x0, x1 = max(0, math.floor(left)), min(width, math.ceil(right))
    y0, y1 = max(0, math.floor(top)), min(height, math.ceil(bottom))
    gx = (torch.arange(x0, x1) + 0.5 - left) / (right - left) * 2 - 1
    gy = (torch.arange(y0, y1) + 0.5 - top) / (bottom - top) * 2 - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None]
    sampled = F.grid_sample(m, grid, mode="bilinear", padding_mode="border",
                            align_corners=False)[0, 0].clamp(0, 1)
    seen = np.zeros((height, width), bool)
    seen[y0:y1, x0:x1] = ((gy.abs() <= 1)[:, None] & (gx.abs() <= 1)[None, :]).numpy()
    full = np.zeros((height, width), np.float32)
    full[y0:y1, x0:x1] = sampled.numpy()
    lut = (colormap_lut(cmap).numpy() * 255).round().astype(np.uint16)
    colour = lut[np.round(full * 255).astype(np.intp)]
    a = round(alpha * 256)
    blend = ((256 - a) * image.astype(np.uint16) + a * colour) >> 8
    washed = (image.astype(np.float32) * (1 - WASH) + 160 * WASH).astype(np.uint16)
    out = np.where(seen[..., None], blend, washed).astype(np.uint8)
    line = max(1, round(max(height, width) / 300))
    if contour:
        mask = ((full >= 0.5) & seen).astype(np.uint8)
        cs, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, cs, -1, (255, 255, 255), line)
    if not seen.all():
        box = (round(left), round(top)), (round(right) - 1, round(bottom) - 1)
        cv2.rectangle(out, *box, (0, 0, 0), line + 2)
        cv2.rectangle(out, *box, (255, 255, 255), line)
    return out


def fit(image: np.ndarray, max_side: int, min_side: int = 0) -> np.ndarray:
    """`image` scaled (bilinear) so that its longer side is between `min_side` and
    `max_side` px."""
    h, w = image.shape[:2]
    if min_side <= max(h, w) <= max_side:
        return np.ascontiguousarray(image[..., :3])
    s = (max_side if max(h, w) > max_side else min_side) / max(h, w)
    return np.array(Image.fromarray(image[..., :3]).resize(
        (max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR))


def mark_crop(image: np.ndarray, geometry: Geometry, max_side: int = MAX_SIDE) -> np.ndarray:
    """The original photo as `whole_image` shows it, without a map: the part the model did
    not see washed out and outlined (the panel's input tile)."""
    return whole_image(image, torch.zeros(1, 1), geometry, alpha=0.0, max_side=max_side)


def upscale_views(views: np.ndarray, size: int) -> np.ndarray:
    img = resize_batch(_as_float_images(views), size)
    return (img * 255).round().byte().permute(0, 2, 3, 1).contiguous().numpy()


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def picture(e: Explanation, index: int = 0, image: np.ndarray | None = None,
            geometry: Geometry | None = None, view: View = "full", alpha: float = 0.5,
            cmap: str = "jet", contour: bool = False) -> np.ndarray:
    """Image `index` of `e` drawn without labels, uint8 (H, W, 3): a bar chart for a
    vector explanation; else its map over `image` -- the whole photo with `geometry` (the
    box the model saw, from `Model.input`) in the "full" view, the crop the model saw in
    the "crop" view (the whole of `image` without `geometry`) -- or, without an image, the
    colour-mapped map alone."""
    m = e.maps[index:index + 1].detach().float().cpu()
    side = max(MIN_SIDE, *m.shape[-2:])
    if e.kind == "vector":
        return bars(e.raw[index:index + 1], side)[0]
    if image is None:
        return (colorize(resize_batch(m, side)) * 255).round().byte()[0].permute(1, 2, 0).numpy()
    if geometry is None:
        height, width = image.shape[:2]
        geometry = Geometry((0.0, 0.0, float(width), float(height)), (width, height))
    if view == "full":
        out = whole_image(image, m[0], geometry, alpha, cmap, contour)
        left, top, right, bottom = geometry.box
        box = (left, top, right - left, bottom - top)
        scale = out.shape[1] / geometry.original_size[0]
    else:
        left, top, right, bottom = (round(c) for c in geometry.box)
        crop = fit(np.ascontiguousarray(image[top:bottom, left:right, :3]), side, side)
        out = overlay(crop[None], m, alpha, cmap, side, contour)[0]
        box, scale = (0.0, 0.0, float(side), float(side)), 1.0
    if "query" in e.extras:  # an attention map's query, from input pixels to the picture's
        qx, qy = (e.extras["query"][index].float().cpu() + 0.5).tolist()
        h, w = m.shape[-2:]
        point = torch.tensor([[(box[0] + qx * box[2] / w) * scale - 0.5,
                               (box[1] + qy * box[3] / h) * scale - 0.5]])
        mark(out[None], point)
    return out


def render(e: Explanation, image: np.ndarray | None = None, geometry: Geometry | None = None,
           index: int = 0, view: View = "full", alpha: float = 0.5, cmap: str = "jet",
           contour: bool = False, title: str | None = None, caption: str = "") -> Image.Image:
    """The picture a person looks at: image `index` of `e` drawn by `picture` with a title
    (default: the method and the class index explained), `caption` and a colour legend.

        x, view, geometry = model.input(rgb)      # rgb: load_image(path)
        expl = Explainer(model, "gradcam")(x[None])
        render(expl, rgb, geometry).save("cat_gradcam.png")

    A PIL image: `.save(path)`, or shown by a notebook as the value of a cell."""
    tile = picture(e, index, image, geometry, view, alpha, cmap, contour)
    title = title if title is not None else f"{e.method} · class {int(e.targets[index])}"
    return Image.fromarray(captioned(e, tile, title, caption, cmap))


def captioned(e: Explanation, tile: np.ndarray, title: str, caption: str = "",
              cmap: str = "jet") -> np.ndarray:
    """`labelled` with the legend `e`'s kind needs: the colormap of a spatial map, the
    value colours of a bar chart."""
    if e.kind == "vector":
        return labelled(tile, title, caption, "viridis",
                        note="bar height and colour: the channel's value")
    return labelled(tile, title, caption, cmap)


def _text_size(fs: int, text: str) -> int:
    return int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=_font(fs)))


def _wrap(text: str, fs: int, width: int) -> list[str]:
    """`text` broken into lines that fit `width` px in font size `fs`."""
    chars = max(8, int(len(text) * width / max(1, _text_size(fs, text)))) if text else 1
    return textwrap.wrap(text, chars) if text else []


def legend(width: int, cmap: str = "jet", fs: int = 12, note: str = "") -> np.ndarray:
    """A colour legend `width` px wide: the colormap from 0 to 1 with its ends labelled
    (every map is scaled to its own range, so 0 is the image's lowest value, 1 its
    highest), and `note` below it."""
    bar_h, pad = max(8, fs), 4
    lines = _wrap(note, fs, width - 2 * pad)
    im = Image.new("RGB", (width, bar_h + fs + 3 * pad + len(lines) * (fs + 4)), "white")
    inner = width - 2 * _text_size(fs, "high 1") - 4 * pad
    lut = (colormap_lut(cmap).numpy() * 255).round().astype(np.uint8)
    x0 = (width - inner) // 2
    if inner > 8:
        ramp = lut[np.linspace(0, 255, inner).round().astype(int)]
        im.paste(Image.fromarray(np.repeat(ramp[None], bar_h, 0)), (x0, pad))
    d = ImageDraw.Draw(im)
    d.rectangle([x0 - 1, pad - 1, x0 + max(inner, 0), pad + bar_h], outline="black")
    d.text((x0 - pad, pad + bar_h // 2), "0 low", fill="black", font=_font(fs), anchor="rm")
    d.text((x0 + inner + pad, pad + bar_h // 2), "high 1", fill="black", font=_font(fs),
           anchor="lm")
    for i, line in enumerate(lines):
        d.text((pad, bar_h + 2 * pad + 2 + i * (fs + 4)), line, fill="#444444", font=_font(fs))
    return np.asarray(im)


def labelled(tile: np.ndarray, title: str, caption: str = "", cmap: str | None = "jet",
             note: str = "map scaled to its own range") -> np.ndarray:
    """`tile` with `title` (and `caption`, what the map means, wrapped) above it and, with
    `cmap`, a colour legend below: a picture a person can read without the command that
    made it."""
    h, w = tile.shape[:2]
    fs = min(28, max(11, w // 40))
    lines = _wrap(caption, fs, w - 8)
    top = fs + 10 + len(lines) * (fs + 4)
    below = legend(w, cmap, fs, note) if cmap else np.zeros((0, w, 3), np.uint8)
    im = Image.new("RGB", (w, top + h + below.shape[0]), "white")
    d = ImageDraw.Draw(im)
    d.text((4, 4), title, fill="black", font=_font(fs))
    for i, line in enumerate(lines):
        d.text((4, fs + 8 + i * (fs + 4)), line, fill="#444444", font=_font(fs))
    im.paste(Image.fromarray(tile), (0, top))
    if below.shape[0]:
        im.paste(Image.fromarray(below), (0, top + h))
    return np.asarray(im)


def panel(tiles: list[np.ndarray], titles: list[str], header: str = "", columns: int = 4,
          cmap: str | None = None, notes: list[str] = ()) -> np.ndarray:
    """Tiles (each H, W, 3 uint8; sizes may differ) in rows of at most `columns`, a title
    above each, an optional header line above all (class name and probability), and below
    them, with `cmap`, a colour legend, then `notes` (one caption a line, wrapped)."""
    cw, ch = max(t.shape[1] for t in tiles), max(t.shape[0] for t in tiles)
    cols = max(1, min(columns, len(tiles)))
    rows, gap = math.ceil(len(tiles) / cols), 4
    fs = max(11, min(cw, 320) // 16)
    pad = fs + 8
    top = pad if header else 0
    width = cols * cw + gap * (cols - 1)
    foot = legend(min(width, 480), cmap, max(11, fs - 2), "each map scaled to its own range"
                  ) if cmap else None
    note_lines = [line for n in notes for line in _wrap(n, max(11, fs - 2), width - 8)]
    foot_h = (foot.shape[0] if foot is not None else 0) + len(note_lines) * (fs + 2) + 4
    canvas = Image.new("RGB", (width, top + rows * (ch + pad) + foot_h), "white")
    draw = ImageDraw.Draw(canvas)
    if header:
        draw.text((4, 4), header, fill="black", font=_font(fs))
    for i, (tile, title) in enumerate(zip(tiles, titles)):
        x, y = (i % cols) * (cw + gap), top + (i // cols) * (ch + pad)
        canvas.paste(Image.fromarray(tile), (x, y + pad))
        while title and _text_size(fs, title) > cw - 4 and len(title) > 2:
            title = title[:-2] + "…"
        draw.text((x + 4, y + 4), title, fill="black", font=_font(fs))
    y = top + rows * (ch + pad)
    if foot is not None:
        canvas.paste(Image.fromarray(foot), (0, y))
        y += foot.shape[0]
    for line in note_lines:
        draw.text((4, y), line, fill="#444444", font=_font(max(11, fs - 2)))
        y += fs + 2
    return np.asarray(canvas)


def png_bytes(arr: np.ndarray, compress: int = 1) -> bytes:
    """PNG encoding; low zlib effort (level 1) keeps batch rendering fast."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr,
                           [cv2.IMWRITE_PNG_COMPRESSION, compress])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def save_png(path: str | os.PathLike, arr: np.ndarray) -> None:
    atomic_write_bytes(path, png_bytes(arr))
