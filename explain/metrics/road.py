"""ROAD, RemOve And Debias (Rong et al., ICML 2022): pixels are removed in the order of the
map, most relevant first (MoRF) or least relevant first (LeRF), at several percentages,
and filled by *noisy linear imputation* instead of a constant, so that the removal leaves
no shape the model could read as evidence; the score is the target class's probability on
the imputed image. MoRF: lower is better; LeRF: higher is better. Per image, the mean over
the percentages (10, 20, ..., 90 % by default).

Imputation: each removed pixel takes the weighted mean of its 8 neighbours (direct 1/6,
diagonal 1/12; at the border the neighbours there are), removed or not, which is a sparse
symmetric positive definite linear system per image and channel; it is solved for the whole
batch at once by conjugate gradients with a 3x3 convolution as the operator, then Gaussian
noise (std `noise`, in the model's normalised input space) is added to the filled pixels.
Above 32 px the solver starts from the half-resolution solution (a cascade), which cuts the
iterations large holes need.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .faithfulness import Forward, pixel_ranks, target_probs
from .maps import as_maps, finite, skipped

PERCENTS = (10, 20, 30, 40, 50, 60, 70, 80, 90)
KERNEL = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])


def _neighbours(t: torch.Tensor) -> torch.Tensor:
    """The weighted sum of each pixel's neighbours, per channel (zero outside the image)."""
    c = t.shape[1]
    k = KERNEL.to(t.device, t.dtype).expand(c, 1, 3, 3)
    return F.conv2d(t, k, padding=1, groups=c)


def impute(x: torch.Tensor, removed: torch.Tensor, noise: float = 0.0,
           generator: torch.Generator | None = None, tol: float = 1e-5) -> torch.Tensor:
    """`x` (N, C, H, W) with the pixels where `removed` (N, 1, H, W) is True replaced by the
    noisy linear imputation (module doc)."""
    u = removed.to(x.dtype)
    filled = _solve(x, u, tol)
    if noise:
        filled = filled + u * noise * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return filled


def _solve(x: torch.Tensor, u: torch.Tensor, tol: float) -> torch.Tensor:
    """`x` with its pixels where `u` is 1 solved for (conjugate gradients). Above 32 px the
    start is the same problem solved at half the resolution and upsampled, so that large
    holes do not take hundreds of iterations to fill from their edges."""
    known = x * (1 - u)
    z = torch.zeros_like(x)
    if min(x.shape[-2:]) > 32 and bool(u.any()):
        keep = F.avg_pool2d(1 - u, 2, ceil_mode=True)
        coarse_u = (keep == 0).to(x.dtype)
        coarse = F.avg_pool2d(known, 2, ceil_mode=True) / keep.clamp(min=1e-12) * (1 - coarse_u)
        z = u * F.interpolate(_solve(coarse, coarse_u, tol), size=tuple(x.shape[-2:]),
                              mode="bilinear", align_corners=False)
    weight = _neighbours(torch.ones_like(x[:1, :1]))          # neighbours' total weight

    def apply(t: torch.Tensor) -> torch.Tensor:
        return u * (weight * t - _neighbours(t))

    b = u * _neighbours(known)
    r = b - apply(z)
    p = r.clone()
    rs = (r * r).sum((2, 3), keepdim=True)
    limit = tol ** 2 * (b * b).sum((2, 3), keepdim=True).clamp(min=1e-30)
    for _ in range(10 * max(x.shape[-2:])):
        if bool((rs <= limit).all()):
            break
        ap = apply(p)
        denom = (p * ap).sum((2, 3), keepdim=True)
        alpha = torch.where(denom > 0, rs / denom.clamp(min=1e-30), torch.zeros_like(rs))
        z = z + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum((2, 3), keepdim=True)
        p = r + torch.where(rs > 0, rs_new / rs.clamp(min=1e-30), torch.zeros_like(rs)) * p
        rs = rs_new
    return known + u * z


def road_scores(forward: Forward, x: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                order: str = "morf", percents: tuple[int, ...] = PERCENTS, noise: float = 0.01,
                batch_size: int = 256, seed: int = 0) -> torch.Tensor:
    """(B, len(percents)) target probabilities with `percents` % of the pixels removed in
    `order` "morf" (most relevant first) or "lerf" and imputed. Rows of non-finite maps are
    NaN (skipped)."""
    if order not in ("morf", "lerf"):
        raise ValueError(f"order: expected morf or lerf, got {order!r}")
    b, _, h, w = x.shape
    maps = as_maps(maps, (h, w))
    ranks = pixel_ranks(maps, seed).view(b, 1, h, w)
    g = torch.Generator().manual_seed(seed)
    probs = torch.empty(b, len(percents), device=x.device)
    for j, pct in enumerate(percents):
        k = round(pct / 100 * h * w)
        removed = ranks < k if order == "morf" else ranks >= h * w - k
        for s in range(0, b, batch_size):
            filled = impute(x[s:s + batch_size], removed[s:s + batch_size], noise, g)
            probs[s:s + batch_size, j] = target_probs(forward, filled, targets[s:s + batch_size],
                                                      batch_size)
    keep = finite(maps)[:, None].expand_as(probs)
    return skipped(probs, keep)
