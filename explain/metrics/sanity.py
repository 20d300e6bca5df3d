"""Model-parameter randomisation test (Adebayo et al. 2018), cascading from the top.

The network is cut into *units*: each residual block (a child of a Sequential/ModuleList
stage) and each other top-level module with parameters, in the order a forward pass runs
them. From the last unit (the classifier) backwards, one unit more at a time is
re-initialised on a copy of the model, and the map of the same input and target class is
compared with the original: Spearman rank correlation and SSIM. A map that depends on what
the model learned falls towards 0. Similarity is the *absolute* rank correlation: an
inverted map (a BN scale that changed sign) carries the same information as the original
(Adebayo et al. report both; the absolute value is the stricter test).

Re-initialisation draws every parameter tensor from N(0, s^2) with s its own RMS, so the
scale of each layer (and of its activations) is kept and only what was learned is lost.
Spearman against an original map that is constant is undefined: skipped (NaN, counted).
A randomised map that turned constant shares no ranking with the original: 0.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, replace
from typing import Iterator

import torch
from torch import nn
from torchmetrics.functional import spearman_corrcoef
from torchmetrics.functional.image import structural_similarity_index_measure

from ..hooks import Hooks
from ..pipeline import explain_batch
from ..model import Model
from .maps import as_maps, constant, finite, skipped


def randomisation_units(net: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the units with parameters, in reverse order of a forward pass (top first)."""
    units: dict[str, nn.Module] = {}
    for name, child in net.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            units.update({f"{name}.{sub}": m for sub, m in child.named_children()})
        else:
            units[name] = child
    units = {n: m for n, m in units.items() if any(True for _ in m.parameters())}
    ran: list[str] = []
    with Hooks() as hooks, torch.no_grad():
        for n, m in units.items():
            hooks.pre(m, lambda mod, inp, n=n: ran.append(n) if n not in ran else None)
        net(x[:1])
    return ran[::-1]


@torch.no_grad()
def randomise_(module: nn.Module, generator: torch.Generator) -> None:
    """Redraw every parameter of `module` in place from N(0, RMS^2) of that tensor."""
    for p in module.parameters():
        rms = p.float().pow(2).mean().sqrt()
        noise = torch.randn(p.shape, generator=generator).to(p.device, p.dtype)
        p.copy_(noise * rms)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) Spearman correlation of each pair of maps (ties get average ranks)."""
    a, b = as_maps(a), as_maps(b, tuple(a.shape[-2:]))
    with warnings.catch_warnings():  # constant columns: handled below, not by a warning
        warnings.simplefilter("ignore")
        rho = spearman_corrcoef(torch.nan_to_num(a).flatten(1).T.double(),
                                torch.nan_to_num(b).flatten(1).T.double()).float().reshape(-1)
    rho = torch.where(constant(b), torch.zeros_like(rho), rho)
    return skipped(rho, finite(a) & finite(b) & ~constant(a))


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) structural similarity of each pair of maps in [0, 1] (Gaussian window 11)."""
    a, b = as_maps(a), as_maps(b, tuple(a.shape[-2:]))
    s = structural_similarity_index_measure(torch.nan_to_num(b)[:, None], torch.nan_to_num(a)[:, None],
                                            data_range=1.0, reduction="none")
    return skipped(s.reshape(-1).float(), finite(a) & finite(b) & ~constant(a))


@dataclass
class SanityResult:
    """Per method: the units randomised so far (cumulative) and, per step, per image, the
    similarity of the randomised map to the original (|Spearman|, SSIM); rows are
    (len(units), B)."""
    method: str
    units: list[str]
    spearman: torch.Tensor
    ssim: torch.Tensor


def cascading_maps(model: Model, method: str, x: torch.Tensor, targets: torch.Tensor,
                   layer: str | None = None, seed: int = 0, options: dict | None = None
                   ) -> Iterator[tuple[str, torch.Tensor]]:
    """(unit, maps) after randomising each further unit, top first, on a copy of the model."""
    net = copy.deepcopy(model.net)
    randomised = replace(model, net=net)
    g = torch.Generator().manual_seed(seed)
    modules = dict(net.named_modules())
    for unit in randomisation_units(net, x.to(model.device)):
        randomise_(modules[unit], g)
        yield unit, explain_batch(randomised, x, [method], layer, targets,
                                  **(options or {}))[method].maps


def sanity_check(model: Model, method: str, x: torch.Tensor, layer: str | None = None,
                 seed: int = 0, options: dict | None = None) -> SanityResult:
    """Cascading randomisation of `model` for `method` on the inputs `x` (kept small);
    `options` go to the method (explain.pipeline.explain_batch)."""
    original = explain_batch(model, x, [method], layer, **(options or {}))[method]
    units, rho, sim = [], [], []
    for unit, maps in cascading_maps(model, method, x, original.targets, layer, seed, options):
        units.append(unit)
        rho.append(rank_correlation(original.maps, maps).abs().cpu())
        sim.append(ssim(original.maps, maps).cpu())
    return SanityResult(method, units, torch.stack(rho), torch.stack(sim))
