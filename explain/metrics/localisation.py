"""Localisation metrics against ground-truth regions (boolean masks; boxes become masks).

- Pointing game (Zhang et al. 2016): a hit when the map's maximum lies within `tolerance`
  px (Euclidean) of the region: 15 px at 224 px, scaled with the image (4 px at 64 px).
- Energy pointing game (Wang et al. 2020, Score-CAM): the share of the map's mass inside.
- Wrong-reason score WR (Friedrich et al. 2023): share of a *wrong-reason* region (a decoy)
  above a threshold, the data set's mean of per-image mean maps; lower is better.

Every function returns one value per image; NaN marks an image skipped by definition (no
ground truth or an empty region, a non-finite map) so that it is counted, not averaged.
A constant map (all-zero included) points nowhere: a pointing-game miss, and in the energy
game the mass of a uniform map (the region's share of the image).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..explanation import normalise
from .maps import as_maps, constant, finite, skipped


def pointing_tolerance(size: tuple[int, int]) -> int:
    """Zhang et al.'s 15 px at 224 px, scaled to the image: 4 px at 64 px, 2 px at 28 px."""
    return round(15 * min(size) / 224)


def box_masks(boxes: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (B, 4) as (x0, y0, x1, y1) in pixels, exclusive ends, -> masks (B, H, W) and
    validity (B,). Boxes are clipped to the image; one with nothing left inside (entirely
    outside, inverted, or non-finite) is invalid and its mask empty."""
    h, w = size
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    ok = torch.isfinite(b).all(1)
    b = torch.nan_to_num(b)
    x0, x1 = b[:, 0].floor().clamp(0, w), b[:, 2].ceil().clamp(0, w)
    y0, y1 = b[:, 1].floor().clamp(0, h), b[:, 3].ceil().clamp(0, h)
    ok &= (x1 > x0) & (y1 > y0)
    xs, ys = torch.arange(w, dtype=b.dtype), torch.arange(h, dtype=b.dtype)
    inx = (xs >= x0[:, None]) & (xs < x1[:, None])
    iny = (ys >= y0[:, None]) & (ys < y1[:, None])
    return (iny[:, :, None] & inx[:, None, :]) & ok[:, None, None], ok


def dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Grow boolean masks (B, H, W) by a disc of `radius` px: every pixel within Euclidean
    distance `radius` of the region."""
    if radius <= 0:
        return masks.bool()
    r = torch.arange(-radius, radius + 1, dtype=torch.float32)
    disc = ((r[:, None] ** 2 + r[None, :] ** 2) <= radius ** 2).float()[None, None]
    grown = F.conv2d(masks.float()[:, None], disc.to(masks.device), padding=radius)
    return grown[:, 0] > 0.5


def pointing_game(maps: torch.Tensor, regions: torch.Tensor, tolerance: int | None = None
                  ) -> torch.Tensor:
    """(B,) 1.0 hit / 0.0 miss; the peak is the first maximum in raster order."""
    m = as_maps(maps)
    regions = regions.to(m.device).bool()
    tol = pointing_tolerance(tuple(m.shape[-2:])) if tolerance is None else tolerance
    peak = torch.nan_to_num(m, nan=-math.inf).flatten(1).argmax(1, keepdim=True)
    hit = dilate(regions, tol).flatten(1).gather(1, peak)[:, 0] & ~constant(m)
    return skipped(hit.float(), finite(m) & regions.flatten(1).any(1))


def energy_pointing_game(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """(B,) share in [0, 1] of the map's mass (negative values clipped) inside the region."""
    m = torch.nan_to_num(as_maps(maps)).clamp(min=0)
    regions = regions.to(m.device).float()
    total = m.flatten(1).sum(1)
    share = (m * regions).flatten(1).sum(1) / total.clamp(min=1e-12)
    uniform = regions.flatten(1).mean(1)
    share = torch.where(total > 0, share, uniform)
    return skipped(share, finite(as_maps(maps)) & (uniform > 0))


def wr_threshold(maps: torch.Tensor) -> float:
    """The data set's mean of per-image means of the clipped, min-max normalised maps
    (finite, non-constant maps only); NaN when no map qualifies."""
    m = as_maps(maps)
    keep = finite(m) & ~constant(m)
    if not keep.any():
        return float("nan")
    return float(normalise(m[keep].clamp(min=0)).flatten(1).mean(1).mean())


def wrong_reason(maps: torch.Tensor, decoys: torch.Tensor, threshold: float | None = None
                 ) -> torch.Tensor:
    """(B,) WR in percent: the share of each decoy region's pixels whose clipped, min-max
    normalised map value exceeds `threshold` (default: `wr_threshold` of these maps).
    Skipped: empty decoy, non-finite or constant map (min-max normalisation is undefined)."""
    m = as_maps(maps)
    decoys = decoys.to(m.device).bool()
    t = wr_threshold(m) if threshold is None else threshold
    norm = normalise(torch.nan_to_num(m).clamp(min=0))
    area = decoys.flatten(1).sum(1)
    above = ((norm > t) & decoys).flatten(1).sum(1)
    keep = finite(m) & ~constant(m) & (area > 0) & (not math.isnan(t))
    return skipped(100.0 * above / area.clamp(min=1), keep)
