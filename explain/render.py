"""Rendering: colormap lookup, alpha blend, contours, labelled panels. Pure functions,
vectorised over the batch with torch; uint8 only at the end."""
from __future__ import annotations

import os
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_write_bytes
from .explanation import Explanation


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
    Channels are averaged in groups where there are more channels than pixel columns."""
    v = values.detach().float().cpu().clamp(0, 1)
    c = v.shape[1]
    cols = F.interpolate(v[:, None], size=size, mode="area" if c > size else "nearest")[:, 0]
    bar = torch.arange(size) * c // size
    gap = torch.zeros(size, dtype=torch.bool)
    if size >= 3 * c:  # wide bars: each starts with a white column
        gap[0], gap[1:] = True, bar[1:] != bar[:-1]
    height = (cols * (size - 1)).round()                                   # (B, S)
    rows = torch.arange(size - 1, -1, -1).float()[:, None]                 # height of row y
    filled = (rows < height[:, None, :]) & ~gap                            # (B, S, S)
    colour = colormap_lut(cmap)[(cols * 255).round().long()]               # (B, S, 3)
    img = torch.ones(v.shape[0], size, size, 3)
    img[:, size // 2] = 0.75
    img = torch.where(filled[..., None], colour[:, None], img)
    return (img * 255).round().byte().numpy()


def tiles(e: Explanation, views: np.ndarray | torch.Tensor, size: int, alpha: float = 0.5,
          cmap: str = "jet", contour: bool = False) -> np.ndarray:
    """How every command draws an explanation: per image, its map blended over the view
    the model saw, or, for a vector explanation (SE excitations), its bar chart; uint8
    tiles (B, size, size, 3)."""
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


def upscale_views(views: np.ndarray, size: int) -> np.ndarray:
    img = resize_batch(_as_float_images(views), size)
    return (img * 255).round().byte().permute(0, 2, 3, 1).contiguous().numpy()


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def panel(tiles: list[np.ndarray], titles: list[str], header: str = "") -> np.ndarray:
    """Tiles (each H, W, 3 uint8, same size) side by side with a title above each and an
    optional header line above all (class name and probability)."""
    h, w = tiles[0].shape[:2]
    fs = max(11, w // 16)
    pad = fs + 8
    top = pad * (2 if header else 1)
    canvas = Image.new("RGB", (w * len(tiles) + 4 * (len(tiles) - 1), h + top), "white")
    draw = ImageDraw.Draw(canvas)
    if header:
        draw.text((4, 4), header, fill="black", font=_font(fs))
    for i, (tile, title) in enumerate(zip(tiles, titles)):
        x = i * (w + 4)
        canvas.paste(Image.fromarray(tile), (x, top))
        draw.text((x + 4, top - pad + 4), title, fill="black", font=_font(fs))
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
