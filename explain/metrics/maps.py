"""What every metric first asks of a batch of maps: its shape, and whether each map can be
scored at all (finite) or carries no ranking (constant)."""
from __future__ import annotations

import torch

from ..explanation import upsample


def as_maps(maps: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, 1, H, W) or (B, H, W) -> float (B, H, W), resized (bilinear) to `size` if given."""
    if maps.ndim == 4:
        if maps.shape[1] != 1:
            raise ValueError(f"maps: expected one channel, got shape {tuple(maps.shape)}")
        maps = maps[:, 0]
    if maps.ndim != 3:
        raise ValueError(f"maps: expected (B, 1, H, W) or (B, H, W), got {tuple(maps.shape)}")
    if size is not None and tuple(maps.shape[-2:]) != tuple(size):
        maps = upsample(maps[:, None], tuple(size))[:, 0]
    return maps.float()


def finite(maps: torch.Tensor) -> torch.Tensor:
    """(B,) True where every value of the map is finite (no NaN or inf)."""
    return torch.isfinite(maps).flatten(1).all(1)


def constant(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B,) True where a map has one value everywhere (all-zero included): it ranks nothing."""
    flat = torch.nan_to_num(maps.float()).flatten(1)
    return (flat.max(1).values - flat.min(1).values) <= eps


def skipped(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """`values` where `keep`, NaN elsewhere: NaN is the metrics' one mark for "skipped by
    definition", which `stats.summarise` counts apart and never averages."""
    return torch.where(keep, values.float(), torch.full_like(values, float("nan"), dtype=torch.float))
