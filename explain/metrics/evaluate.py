"""One evaluation run: every method on every batch of a source, each metric per image,
then summaries (mean, 95% interval, skipped counts), mean curves and the sanity check.
`explain eval` and `benchmarks/results.py` both call `evaluate`."""
from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm import tqdm

from ..explanation import Explanation
from ..pipeline import explain_batch
from ..model import Model
from ..precision import autocast_dtype
from .faithfulness import auc, confidence_change, perturbation_curves, step_counts
from .localisation import (energy_pointing_game, pointing_game, pointing_tolerance, wr_threshold,
                           wrong_reason)
from .maps import constant, finite
from .road import PERCENTS as ROAD_PERCENTS, road_scores
from .sanity import sanity_check
from .sources import EvalBatch, Source
from .stats import Stat, summarise


@dataclass(frozen=True)
class Metric:
    label: str
    better: str       # "higher" or "lower"
    digits: int


METRICS: dict[str, Metric] = {
    "pointing_game": Metric("pointing game (per-class mean)", "higher", 3),
    "energy_pointing_game": Metric("energy pointing game", "higher", 3),
    "deletion_auc": Metric("deletion AUC", "lower", 3),
    "insertion_auc": Metric("insertion AUC", "higher", 3),
    "road_morf": Metric("ROAD MoRF (mean prob., 10-90% removed)", "lower", 3),
    "road_lerf": Metric("ROAD LeRF (mean prob., 10-90% removed)", "higher", 3),
    "average_drop": Metric("average drop %", "lower", 1),
    "increase_in_confidence": Metric("increase in confidence %", "higher", 1),
    "wrong_reason": Metric("wrong-reason score WR %", "lower", 1),
    "sanity_spearman": Metric("sanity: |Spearman| at full randomisation", "lower", 3),
    "sanity_ssim": Metric("sanity: SSIM at full randomisation", "lower", 3),
}


@dataclass
class Report:
    model: str
    data: str
    images: int
    methods: list[str]
    settings: dict
    accuracy: float | None
    metrics: dict[str, dict[str, Stat]]              # method -> metric -> Stat
    map_counts: dict[str, dict[str, int]]            # method -> constant / non-finite maps
    fractions: list[float]                           # x of the deletion/insertion curves
    curves: dict[str, dict[str, list[float | None]]]  # method -> deletion/insertion mean curve
    sanity: dict[str, dict]                          # method -> units, per-unit Stats
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"model": self.model, "data": self.data, "images": self.images,
                "methods": self.methods, "settings": self.settings, "accuracy": self.accuracy,
                "metrics": {m: {k: s.to_dict() for k, s in d.items()} for m, d in self.metrics.items()},
                "map_counts": self.map_counts, "fractions": self.fractions, "curves": self.curves,
                "sanity": {m: {"units": d["units"],
                               "spearman": [s.to_dict() for s in d["spearman"]],
                               "ssim": [s.to_dict() for s in d["ssim"]]} for m, d in self.sanity.items()},
                "failed": [{"file": f, "error": e} for f, e in self.failed], "notes": self.notes}

    @classmethod
    def from_dict(cls, d: dict) -> "Report":
        """The report `to_dict` wrote (metrics.json), read back."""
        stats = lambda items: [Stat(**s) for s in items]  # noqa: E731
        return cls(model=d["model"], data=d["data"], images=d["images"], methods=d["methods"],
                   settings=d["settings"], accuracy=d["accuracy"],
                   metrics={m: {k: Stat(**s) for k, s in ms.items()} for m, ms in d["metrics"].items()},
                   map_counts=d["map_counts"], fractions=d["fractions"], curves=d["curves"],
                   sanity={m: {"units": s["units"], "spearman": stats(s["spearman"]),
                               "ssim": stats(s["ssim"])} for m, s in d["sanity"].items()},
                   failed=[(f["file"], f["error"]) for f in d["failed"]], notes=d["notes"])


def _scored_maps(e: Explanation) -> torch.Tensor:
    """The method's maps, with NaN rows where its raw map was not finite (Explanation
    normalisation would have turned them into silent zeros)."""
    ok = finite(e.raw)
    return torch.where(ok.view(-1, 1, 1, 1), e.maps, torch.full_like(e.maps, float("nan")))


def _mean_curve(curves: list[torch.Tensor]) -> list[float | None]:
    """Mean over the images whose maps could be scored; None where none could."""
    c = torch.cat(curves)
    c = c[~torch.isnan(c).any(1)]
    return [round(float(v), 5) for v in c.mean(0)] if len(c) else [None] * curves[0].shape[1]


def perturbed_forward(net: torch.nn.Module, precision: str = "fp32"
                      ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward pass the faithfulness metrics run thousands of times per image: channels-
    last, and under bf16 autocast with precision "bf16" (or "auto" where the CPU/GPU has
    fast bf16). The maps themselves are always computed in fp32."""
    device = next(net.parameters()).device
    dtype = autocast_dtype(precision, device)
    net.to(memory_format=torch.channels_last)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return net(x.contiguous(memory_format=torch.channels_last))
    return forward


def score_batch(forward: Callable[[torch.Tensor], torch.Tensor], e: Explanation,
                x: torch.Tensor, batch: EvalBatch, steps: int, batch_size: int, seed: int,
                road: bool = False) -> dict[str, torch.Tensor]:
    """Per-image values of every metric this batch's ground truth allows (WR, which needs
    the whole set's threshold, excepted), plus the deletion/insertion curves; with `road`,
    ROAD's MoRF and LeRF means."""
    maps, t = _scored_maps(e), e.targets
    out: dict[str, torch.Tensor] = {}
    for mode in ("deletion", "insertion"):
        out[f"{mode}_curve"], fractions = perturbation_curves(forward, x, maps, t, mode, steps,
                                                              batch_size, seed)
        out[f"{mode}_auc"] = auc(out[f"{mode}_curve"], fractions)
    if road:
        for order in ("morf", "lerf"):
            out[f"road_{order}"] = road_scores(forward, x, maps, t, order,
                                               batch_size=batch_size, seed=seed).mean(1)
    clean = e.probs.gather(1, t[:, None])[:, 0]
    out["average_drop"], out["increase_in_confidence"] = confidence_change(
        forward, x, maps, t, clean, batch_size)
    if batch.regions is not None:
        out["pointing_game"] = pointing_game(maps, batch.regions)
        out["energy_pointing_game"] = energy_pointing_game(maps, batch.regions)
    return {k: v.cpu() for k, v in out.items()}


def sanity_stats(model: Model, method: str, x: torch.Tensor, layer: str | None, seed: int,
                 options: dict | None = None) -> dict:
    """The sanity check of one method, summarised per randomised unit."""
    res = sanity_check(model, method, x, layer, seed, options)
    return {"units": res.units, "spearman": [summarise(r, seed=seed) for r in res.spearman],
            "ssim": [summarise(r, seed=seed) for r in res.ssim]}


def evaluate(model: Model, source: Source, methods: list[str], layer: str | None = None,
             steps: int = 16, sanity_images: int = 16, seed: int = 0, batch_size: int = 256,
             precision: str = "fp32", progress: bool = True, road: bool = False,
             options: dict | None = None) -> Report:
    """Run `methods` on `source` and measure every metric the source's ground truth allows
    (and with `road`, ROAD: explain.metrics.road); `options` go to the methods
    (explain.pipeline.explain_batch: Score-CAM's `channels`)."""
    options = options or {}
    forward = perturbed_forward(model.net.eval(), precision)
    per: dict[str, dict[str, list[torch.Tensor]]] = {m: defaultdict(list) for m in methods}
    counts = {m: {"constant_maps": 0, "nonfinite_maps": 0} for m in methods}
    decoy_maps: dict[str, list[torch.Tensor]] = defaultdict(list)
    decoys, classes, sanity_x, flat = [], [], [], set()
    correct = known = seen = 0
    size = None
    bar = tqdm(total=source.size, desc=f"eval {model.name}", unit="img", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    for batch in source.batches():
        x = batch.x.to(model.device)
        size = tuple(x.shape[-2:])
        expl = explain_batch(model, x, methods, layer, **options)
        pred = next(iter(expl.values())).logits.argmax(1).cpu()
        has = batch.labels >= 0
        correct += int((pred[has] == batch.labels[has]).sum())
        known += int(has.sum())
        classes.append(torch.where(has, batch.labels, pred))
        for m, e in expl.items():
            if e.kind == "vector":  # not a map (SE excitations): nothing to measure
                flat.add(m)
                continue
            for k, v in score_batch(forward, e, x, batch, steps, batch_size, seed, road).items():
                per[m][k].append(v)
            maps = _scored_maps(e)[:, 0].cpu()
            counts[m]["constant_maps"] += int((constant(maps) & finite(maps)).sum())
            counts[m]["nonfinite_maps"] += int((~finite(maps)).sum())
            if batch.decoys is not None:
                decoy_maps[m].append(maps)
        if batch.decoys is not None:
            decoys.append(batch.decoys)
        sanity_x.append(batch.x[:max(0, sanity_images - seen)])
        seen += len(x)
        bar.update(len(x))
    bar.close()
    methods = [m for m in methods if m not in flat]
    for m, parts in decoy_maps.items():
        maps = torch.cat(parts)
        per[m]["wrong_reason"] = [wrong_reason(maps, torch.cat(decoys), wr_threshold(maps))]
    curves = {m: {mode: _mean_curve(per[m].pop(f"{mode}_curve")) for mode in ("deletion", "insertion")}
              for m in methods if seen}
    labels = torch.cat(classes) if classes else None
    metrics = {m: {k: summarise(torch.cat(v), labels if k == "pointing_game" else None, seed=seed)
                   for k, v in per[m].items()} for m in methods}
    xs = torch.cat(sanity_x) if sanity_x else torch.zeros(0)
    sanity = {m: sanity_stats(model, m, xs, layer, seed, options)
              for m in tqdm(methods if len(xs) else [], desc="sanity check", disable=not progress,
                            file=sys.stderr)}
    for m, d in sanity.items():
        metrics[m]["sanity_spearman"], metrics[m]["sanity_ssim"] = d["spearman"][-1], d["ssim"][-1]
    pixels = size[0] * size[1] if size else 0
    fractions = [round(c / pixels, 5) for c in step_counts(pixels, steps)] if size else []
    settings = {"steps": steps, "pointing_tolerance_px": pointing_tolerance(size) if size else None,
                "seed": seed, "layer": layer, "sanity_images": len(xs), "precision": precision,
                "road_percents": list(ROAD_PERCENTS) if road else None}
    notes = list(source.notes) + [f"{m}: no spatial map, not measured" for m in sorted(flat)]
    return Report(model.name, source.name, seen, methods, settings,
                  correct / known if known else None, metrics, {m: counts[m] for m in methods},
                  fractions, curves, sanity,
                  list(source.failed), notes)
