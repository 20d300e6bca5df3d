"""Summaries of per-image scores: mean with a 95% bootstrap interval, and the count of
images skipped by a metric's definition (NaN), reported apart and never averaged."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Stat:
    mean: float | None     # None when no image could be scored
    low: float | None      # 95% percentile-bootstrap interval
    high: float | None
    n: int                 # images scored
    skipped: int           # images skipped by the metric's definition

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self, digits: int = 3) -> str:
        if self.mean is None:
            return f"n/a ({self.skipped} skipped)"
        s = f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return s + (f" ({self.skipped} skipped)" if self.skipped else "")


def _mean(values: torch.Tensor, classes: torch.Tensor | None, k: int) -> torch.Tensor:
    """Mean over the last dim of `values` (R, N); with `classes` (R, N), the mean of the
    per-class means over the classes present in each row."""
    if classes is None:
        return values.mean(1)
    r = values.shape[0]
    flat = (torch.arange(r)[:, None] * k + classes).flatten()
    sums = torch.zeros(r * k, dtype=values.dtype).index_add_(0, flat, values.flatten()).view(r, k)
    counts = torch.zeros(r * k, dtype=values.dtype).index_add_(0, flat, torch.ones_like(values).flatten()).view(r, k)
    present = counts > 0
    return (sums / counts.clamp(min=1)).sum(1) / present.sum(1)


def summarise(values: torch.Tensor, classes: torch.Tensor | None = None,
              resamples: int = 1000, seed: int = 0) -> Stat:
    """Mean of the non-NaN `values` (N,) — per-class mean when `classes` (N,) is given —
    with a 95% percentile-bootstrap interval over images (seeded, so reruns agree)."""
    v = values.detach().double().cpu().flatten()
    keep = ~torch.isnan(v)
    n, dropped = int(keep.sum()), int((~keep).sum())
    if n == 0:
        return Stat(None, None, None, 0, dropped)
    v = v[keep]
    c = None
    if classes is not None:
        _, c = torch.unique(classes.cpu().flatten()[keep], return_inverse=True)
    k = int(c.max()) + 1 if c is not None else 1
    mean = float(_mean(v[None], None if c is None else c[None], k)[0])
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (resamples, n), generator=g)
    boot = _mean(v[idx], None if c is None else c[idx], k)
    low, high = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=boot.dtype)).tolist()
    return Stat(mean, low, high, n, dropped)
