"""Faithfulness metrics: does the model's confidence follow the map?

- Deletion / insertion (Petsiuk et al. 2018, RISE): pixels in order of the map, most
  relevant first, are deleted (set to zero in normalised space, the data mean) or inserted
  (into a Gaussian-blurred copy, kernel 11, sigma 5), a fixed number per step; the curve is
  the softmax probability of the target class; its area by the trapezoid rule on [0, 1].
  Deletion: lower is better; insertion: higher is better.
- Average drop / increase in confidence (Chattopadhay et al. 2018, Grad-CAM++): the input
  multiplied by its map (in normalised space) against the clean input.

All perturbed inputs of a batch are built as one tensor and run in chunks of `batch_size`.
Ties in a map (a constant map above all) are ordered at random with a seeded generator, so
a map that ranks nothing scores as a random order would.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torchvision.transforms.functional import gaussian_blur

from .maps import as_maps, finite, skipped

Forward = Callable[[torch.Tensor], torch.Tensor]


@torch.inference_mode()
def target_probs(forward: Forward, x: torch.Tensor, targets: torch.Tensor,
                 batch_size: int = 256) -> torch.Tensor:
    """Softmax probability of `targets[i]` for each input (N, C, H, W), in chunks."""
    out = [forward(x[i:i + batch_size]).float().softmax(1)
           .gather(1, targets[i:i + batch_size, None])[:, 0] for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else x.new_zeros(0)


def pixel_ranks(maps: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(B, H*W) rank of every pixel, 0 = most relevant; equal values in random order."""
    m = torch.nan_to_num(as_maps(maps)).flatten(1)
    g = torch.Generator().manual_seed(seed)
    shuffle = torch.rand(m.shape, generator=g).argsort(1).to(m.device)
    order = shuffle.gather(1, m.gather(1, shuffle).argsort(dim=1, descending=True, stable=True))
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(m.shape[1], device=m.device).expand_as(order))
    return ranks


def blurred(x: torch.Tensor) -> torch.Tensor:
    """The insertion baseline: RISE's Gaussian blur, kernel 11, sigma 5."""
    return gaussian_blur(x, [11, 11], [5.0, 5.0])


def step_counts(n: int, steps: int) -> list[int]:
    """Pixels perturbed after each of steps 0..steps: ceil(n / steps) more each time."""
    per = math.ceil(n / steps)
    return [min(k * per, n) for k in range(steps + 1)]


def perturbation_curves(forward: Forward, x: torch.Tensor, maps: torch.Tensor,
                        targets: torch.Tensor, mode: str = "deletion", steps: int = 16,
                        batch_size: int = 256, seed: int = 0
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(curves (B, steps + 1), fractions (steps + 1,)) for `mode` deletion or insertion.

    Step k has perturbed the ceil(H*W / steps) * k most relevant pixels (all at the end).
    Rows of non-finite maps are NaN (skipped).
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode: expected deletion or insertion, got {mode!r}")
    b, c, h, w = x.shape
    counts = torch.tensor(step_counts(h * w, steps), device=x.device)
    maps = as_maps(maps, (h, w))
    ranks = pixel_ranks(maps, seed).view(b, 1, 1, h, w)
    start, end = (x, torch.zeros_like(x)) if mode == "deletion" else (blurred(x), x)
    k_chunk = max(1, batch_size // max(b, 1))
    probs = []
    for s in range(0, steps + 1, k_chunk):
        done = ranks < counts[s:s + k_chunk].view(1, -1, 1, 1, 1)      # (B, K, 1, H, W)
        xs = torch.where(done, end[:, None], start[:, None]).flatten(0, 1)
        t = targets[:, None].expand(-1, done.shape[1]).flatten()
        probs.append(target_probs(forward, xs, t, batch_size).view(b, -1))
    curves = torch.cat(probs, 1)
    keep = finite(maps)[:, None].expand_as(curves)
    return skipped(curves, keep), counts.float().cpu() / (h * w)


def auc(curves: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """(B,) area under each curve by the trapezoid rule; NaN rows stay NaN."""
    return torch.trapezoid(curves, fractions.to(curves.device), dim=1)


def confidence_change(forward: Forward, x: torch.Tensor, maps: torch.Tensor,
                      targets: torch.Tensor, clean: torch.Tensor | None = None,
                      batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(average drop %, increase in confidence %) per image, each (B,):
    drop = 100 * max(0, Y - O) / Y and increase = 100 * [O > Y], with Y the target's
    probability on the clean input (`clean`, or computed) and O on input * map."""
    m = as_maps(maps, tuple(x.shape[-2:]))
    y = target_probs(forward, x, targets, batch_size) if clean is None else clean.float()
    o = target_probs(forward, x * torch.nan_to_num(m)[:, None].to(x.dtype), targets, batch_size)
    keep = finite(m)
    drop = 100.0 * (y - o).clamp(min=0) / y.clamp(min=1e-12)
    return skipped(drop, keep), skipped(100.0 * (o > y).float(), keep)
