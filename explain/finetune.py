"""Fine-tuning an ABN on edited attention maps (Mitsuhara et al.), and its before/after report.

L = L_att + L_per + gamma * ||M(x) - M'(x)||^2, the map term only on samples that carry an
edit, mixed with unedited training samples. The loop is `explain.train.train`; this module
supplies the data set (edited samples first, then the unedited ones), the feature extractor
g(x) that stays frozen (the paper's default), and the report:
held-out accuracy, agreement of M(x) with the edits, and per-class changes.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .atomic import atomic_write_text
from .checkpoint import read_card
from .domain import describe, misfits
from .edits import Edit, EditStore, MapScale, map_scale
from .errors import ExplainError, ImageError
from .explanation import upsample
from .finetune_config import PAPER, Fill, FinetuneConfig
from .images import read_image
from .labels import class_key, class_lookup
from .losses import map_loss
from .models import get_arch
from .pipeline import prepare
from .model import Model
from .catalog import ALIASES, ZOO
from .train import TrainConfig, train
from .trainsets import ArraySet, FolderSet, TrainSet



@dataclass
class EditedSamples:
    """Edited images as tensors: x (N, C, H, W) normalised, y (N,), maps (N, 1, H, W) the
    edited M' (or, for RRR/HINT, the annotation mask), original (N, 1, H, W) the model's own
    M(x) when the edit was made (None when unknown: no counterfactuals then); both raw
    M(x) values, `scale` the model's edit units (explain.edits.MapScale)."""
    x: torch.Tensor
    y: torch.Tensor
    maps: torch.Tensor
    original: torch.Tensor | None = None
    scale: MapScale = MapScale()

    def removed(self) -> torch.Tensor | None:
        """Where the person took attention away: M' below half of M, where M was not ~0
        (in edit units)."""
        if self.original is None:
            return None
        m, edited = self.scale.units(self.original), self.scale.units(self.maps)
        return (edited < 0.5 * m) & (m > 0.02)




def counterfactual_fill(x: torch.Tensor, region: torch.Tensor, g: torch.Generator,
                        fill: Fill = "mix") -> torch.Tensor:
    """`x` with each sample's `region` (B, C, H, W bool) refilled with content that carries no
    information about its label: "donor", the same pixels of another sample of the batch;
    "flat", one random value within the batch's range; "mix", each for half the samples."""
    b = x.shape[0]
    donor = x[torch.randperm(b, generator=g)]
    lo, hi = x.amin(), x.amax()
    flat = (lo + (hi - lo) * torch.rand(b, x.shape[1], 1, 1, generator=g)).expand_as(x)
    share_flat = {"mix": 0.5, "donor": 0.0, "flat": 1.0}[fill]
    new = torch.where(torch.rand(b, 1, 1, 1, generator=g) < share_flat, flat, donor)
    return torch.where(region, new, x)


def feature_modules(net: nn.Module) -> list[nn.Module]:
    """The feature extractor g(x) of a network that declares a feature split."""
    return net.feature_modules()


MAP_HEAD = ("att_conv3", "bn_att3")


def all_but_map(net: nn.Module) -> list[nn.Module]:
    """Every module but the map's last convolution and its normalisation (scope "map")."""
    return [m for name, m in net.named_children() if name not in MAP_HEAD]


def tuning_config(net: nn.Module, chosen: dict) -> FinetuneConfig:
    """The settings the user `chosen`, the rest the network's own `finetune_defaults`
    (e.g. the ImageNet ABN's), then FinetuneConfig's."""
    return FinetuneConfig(**{**getattr(net, "finetune_defaults", {}), **chosen})


class EditedSet(TrainSet):
    """Edited samples mixed with the unedited samples of `base`, batched as dicts with
    `edit_map` (zeros where there is no edit) and `has_edit`.

    Training batches follow a bounded schedule: `share` of every batch comes from the edited
    samples (cycled in seeded permutations), the rest from `base`; an epoch is `steps`
    batches (default: as many as one pass over all samples takes). With `counterfactual`,
    the removed region of each edited sample is refilled (`counterfactual_fill`), seeded per
    batch so that a resumed run sees the same batches."""

    def __init__(self, edited: EditedSamples, base: TrainSet | None, classes: list[str], spec,
                 share: float = 0.5, steps: int | None = None,
                 counterfactual: Fill | None = None):
        if not 0 < share <= 1:
            raise ExplainError(f"{share} must be in (0, 1]", param="edited_share")
        self.edited, self.base = edited, base if base is not None and len(base) else None
        self.classes, self.input = classes, spec
        self.n = len(edited.y)
        self.share, self.steps = share, steps
        self.fill = counterfactual
        self.region = edited.removed() if counterfactual else None

    def __len__(self) -> int:
        return self.n + (len(self.base) if self.base is not None else 0)

    def num_batches(self, batch_size: int) -> int:
        return self.steps or super().num_batches(batch_size)

    def __getitems__(self, idx: list[int]) -> dict:
        i = torch.as_tensor(idx, dtype=torch.long)
        e, b = i[i < self.n], (i[i >= self.n] - self.n).tolist()
        parts = [{"x": self.edited.x[e], "y": self.edited.y[e], "edit_map": self.edited.maps[e],
                  "has_edit": torch.ones(len(e), dtype=torch.bool)}]
        if b:
            base = self.base.__getitems__(b) if isinstance(self.base, ArraySet) \
                else self.base.collate([self.base[j] for j in b])
            parts.append({"x": base["x"], "y": base["y"],
                          "edit_map": torch.zeros(len(b), 1, *self.edited.maps.shape[-2:]),
                          "has_edit": torch.zeros(len(b), dtype=torch.bool)})
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def loader(self, batch_size: int, seed: int, epoch: int, start: int = 0, rank: int = 0,
               world: int = 1, workers: int = 0, shuffle: bool = True) -> Iterable[dict]:
        if not shuffle:
            return super().loader(batch_size, seed, epoch, start, rank, world, workers, shuffle)
        return self._mixed(batch_size, seed, epoch, start, rank, world)

    def _mixed(self, batch_size: int, seed: int, epoch: int, start: int, rank: int,
               world: int) -> Iterator[dict]:
        steps = self.num_batches(batch_size)
        k = batch_size if self.base is None else min(batch_size, max(1, round(self.share * batch_size)))
        base_k = batch_size - k
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        stream = (lambda n, count: torch.cat([torch.randperm(n, generator=g)
                                              for _ in range(-(-count // n))]))
        edited = stream(self.n, steps * k)
        base = stream(len(self.base), steps * base_k) if base_k else None
        for s in range(start, steps):
            idx = edited[s * k:(s + 1) * k].tolist()
            if base is not None:
                idx += (base[s * base_k:(s + 1) * base_k] + self.n).tolist()
            batch = self.__getitems__(idx[rank::world])
            if self.region is not None:
                fg = torch.Generator().manual_seed(seed * 7_919 + epoch * 100_003 + s)
                region = torch.zeros_like(batch["x"], dtype=torch.bool)
                sel = torch.as_tensor(idx[rank::world]) < self.n
                ids = torch.as_tensor(idx[rank::world])[sel]
                region[sel] = self.region[ids].expand(-1, batch["x"].shape[1], -1, -1)
                batch["x"] = counterfactual_fill(batch["x"], region, fg, self.fill)
            yield batch


def checkpoint_dir(name: str) -> Path:
    """The checkpoint folder behind `--model` (a folder, its card.json, or a zoo name)."""
    p = Path(name)
    for folder in (p.parent if p.name == "card.json" else p, ZOO / ALIASES.get(name, name)):
        if (folder / "card.json").is_file():
            return folder
    raise ExplainError(f"{name!r} is not a checkpoint folder (card.json + "
                       "model.safetensors) or an embedded model; fine-tuning needs one", param="model")


def check_domain(model: Model, paths: list[Path]) -> None:
    """Refuse edited images from outside the model's domain with one line: fine-tuning on
    them would silently squeeze a photo into, say, a 28x28 grayscale Fashion-MNIST model
    (explain.domain: the severe misfits)."""
    bad = []
    for p in paths:
        with contextlib.suppress(ImageError):  # unreadable files are reported by prepare()
            rgb, mode = read_image(p)
            why = [m.text for m in misfits(model.input, rgb, mode, str(p)) if m.severe]
            if why:
                bad.append(f"{p} ({'; '.join(why)})")
    if bad:
        raise ExplainError(f"{len(bad)} edited image(s) are not in the model's domain "
                           f"({describe(model)}): first {bad[0]}", param="edits")


def load_edited(store: EditStore, model: Model, edits: list[Edit]) -> tuple[EditedSamples, list[str]]:
    """The labelled edits as tensors, and one message per edit that cannot be used."""
    problems = [f"edit of {Path(e.image).name} has no label (put images in class "
                "sub-folders, or choose one in the editor)" for e in edits if e.label is None]
    edits = [e for e in edits if e.label is not None]
    check_domain(model, [Path(e.image) for e in edits])
    batch, errors = prepare(model, [Path(e.image) for e in edits])
    problems += [msg for _, msg in errors]
    by_path = {str(Path(e.image)): e for e in edits}
    keep = [by_path[str(p)] for p in batch.paths] if batch else []
    if not keep:
        raise ExplainError(f"{store.root}: no usable edits"
                           + (f" ({problems[0]}{', ...' if len(problems) > 1 else ''})" if problems else ""),
                           param="edits")
    pairs = [store.load(e) for e in keep]
    scale = map_scale(model)
    original, maps = (scale.raw(upsample(torch.from_numpy(np.stack([p[i] for p in pairs]))[:, None],
                                         model.input.size)) for i in (0, 1))
    y = torch.tensor([e.label for e in keep], dtype=torch.long)
    return EditedSamples(batch.x, y, maps, original, scale), problems


def align_classes(data: TrainSet, classes: list[str], name: str) -> TrainSet:
    """`data` with labels indexing the model's `classes` (folder names matched loosely)."""
    if list(data.classes) == list(classes):
        return data
    index = class_lookup(classes)
    missing = [c for c in data.classes if class_key(c) not in index]
    if missing or not isinstance(data, FolderSet):
        raise ExplainError(f"{name}: classes {missing or data.classes} are not among the "
                           f"model's classes ({', '.join(classes)})", param="data")
    files = [(p, index[class_key(data.classes[y])]) for p, y in data.files]
    return FolderSet(files, list(classes), data.input)


def limit(data: TrainSet, n: int | None, seed: int) -> TrainSet:
    """A seeded random subset of `n` samples (all when n is None or larger)."""
    if n is None or n >= len(data):
        return data
    idx = np.sort(np.random.default_rng(seed).permutation(len(data))[:n])
    if isinstance(data, ArraySet):
        return ArraySet(data.data.subset(idx), {k: v[idx].numpy() for k, v in data.extras.items()})
    return FolderSet([data.files[i] for i in idx], data.classes, data.input)


def exclude(data: TrainSet, paths: list[str]) -> TrainSet:
    """`data` without the edited images, so none counts twice or leaks into the held-out set."""
    if not isinstance(data, FolderSet):
        return data
    drop = {str(Path(p).resolve()) for p in paths}
    return FolderSet([(p, y) for p, y in data.files if str(Path(p).resolve()) not in drop],
                     data.classes, data.input)


def editable_card(init: str | os.PathLike) -> dict:
    """The model card of `init`, whose architecture must declare re-scoring with a given map
    and a feature split (explain.capabilities): the map the edits change and the feature
    extractor frozen here. Every ABN does (abn_resnet, abn_efficientnet_lite0, ...)."""
    card = read_card(init)
    if not get_arch(card.get("arch", "")).caps.editable:
        raise ExplainError(f"{init}: architecture {card.get('arch')!r} is not an ABN: it declares "
                           "no re-scoring with an edited map and feature split; fine-tuning on "
                           "edited maps needs both (e.g. abn_resnet, abn_efficientnet_lite0)",
                           param="model")
    return card


def finetune(init: str | os.PathLike, out: str | os.PathLike, train_set: TrainSet,
             test_set: TrainSet, cfg: FinetuneConfig, command: str = "",
             progress: bool = True, resume: bool = False) -> Path:
    """Fine-tune the ABN checkpoint `init` on `train_set` (batches may carry edit_map and
    has_edit) with the map loss; writes the new checkpoint + card to `out` (`resume`
    continues an interrupted run there)."""
    card = editable_card(init)
    residual = cfg.perception == "residual"
    overrides = {} if card["arch_kwargs"].get("residual", True) == residual else {"residual": residual}
    tc = TrainConfig(arch=card["arch"], data=card.get("data", ""), out=str(out),
                     epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                     device=cfg.device, precision=cfg.precision, augment=cfg.augment,
                     init=str(init), arch_kwargs=overrides, resume=resume, command=command,
                     optimizer=cfg.optimizer)
    frozen = all_but_map if cfg.scope == "map" else feature_modules if cfg.freeze_features \
        else None
    return train(tc, {"gamma": cfg.gamma}, train_set, test_set, frozen=frozen, progress=progress)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson's r of each row of a with the same row of b (NaN where one is constant)."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@torch.no_grad()
def measure(net: nn.Module, test_set: TrainSet, edited: EditedSamples | None,
            batch_size: int = 256, desc: str | None = None) -> dict:
    """Held-out accuracy (overall and per class; None without held-out images) and, with
    `edited`, `edit_agreement`. `desc` shows a progress bar with that label."""
    net.eval()
    device = next(net.parameters()).device
    preds, labels = [], []
    batches = test_set.loader(batch_size, seed=0, epoch=0, shuffle=False)
    for batch in tqdm(batches, desc=desc, disable=desc is None, unit="batch", file=sys.stderr,
                      dynamic_ncols=True):
        preds.append(net(batch["x"].to(device)).argmax(1).cpu())
        labels.append(batch["y"])
    p, y = (torch.cat(t) if t else torch.zeros(0, dtype=torch.long) for t in (preds, labels))
    k = len(test_set.classes)
    per_class = [float((p[y == c] == c).float().mean()) if (y == c).any() else None
                 for c in range(k)]
    res = {"accuracy": float((p == y).float().mean()) if len(y) else None,
           "test_images": len(y), "per_class_accuracy": per_class}
    return {**res, **(edit_agreement(net, edited, batch_size) if edited is not None else {})}


@torch.no_grad()
def edit_agreement(net: nn.Module, edited: EditedSamples, batch_size: int = 256) -> dict:
    """On the edited images: their accuracy, and how close M(x) is to the edits: agreement
    = 1 - mean |M(x) - M'| at input size in edit units (for most ABNs M's own), the map
    loss, and Pearson's r of M(x) with M' (the map's shape, blind to a change of M's mean
    or spread)."""
    net.eval()
    device = next(net.parameters()).device
    agree, loss, corr, right = [], [], [], 0
    for s in range(0, len(edited.y), batch_size):
        x, target = edited.x[s:s + batch_size].to(device), edited.maps[s:s + batch_size].to(device)
        out = net.forward_all(x)
        right += int((out.logits.argmax(1).cpu() == edited.y[s:s + batch_size]).sum())
        loss.append(map_loss(out.att_map, target, torch.ones(len(x), device=device)) * len(x))
        att = upsample(out.att_map, target.shape[-2:]).flatten(1).float()
        agree.append((att - target.flatten(1)).abs().mean(1))
        corr.append(pearson(att, target.flatten(1).float()))
    span = edited.scale.hi - edited.scale.lo
    return {"map_agreement": float(1 - torch.cat(agree).mean() / span),
            "map_loss": float(sum(loss) / len(edited.y)),
            "map_correlation": float(torch.cat(corr).nanmean()),
            "edited_images": len(edited.y), "edited_accuracy": right / len(edited.y)}


def report(before: dict, after: dict, classes: list[str], info: dict) -> dict:
    rows = [{"class": c, "before": b, "after": a,
             "change": None if a is None or b is None else a - b}
            for c, b, a in zip(classes, before["per_class_accuracy"], after["per_class_accuracy"])]
    return {**info, "before": before, "after": after, "per_class": rows}


def write_report(out: str | os.PathLike, rep: dict) -> tuple[Path, Path]:
    """report.json and report.md in `out`, both written atomically."""
    out = Path(out)
    atomic_write_text(out / "report.json", json.dumps(rep, indent=2) + "\n")
    b, a = rep["before"], rep["after"]
    pct = (lambda v: "-" if v is None else f"{v:.2%}")
    pts = (lambda v: "-" if v is None else f"{v * 100:+.1f} pts")
    lines = [f"# Fine-tuning on edited maps: {rep.get('model', '')}", "",
             f"Command: `{rep.get('command', '')}`", "",
             f"Edits used: {rep.get('edits_used')} ({rep.get('edits_skipped', 0)} skipped); "
             f"unedited samples: {rep.get('unedited')}; config: `{json.dumps(rep.get('config', {}))}`",
             "", "| measure | before | after |", "|---|---|---|",
             f"| held-out accuracy ({b['test_images']} images) | {pct(b['accuracy'])} | {pct(a['accuracy'])} |"]
    if "map_agreement" in b:
        lines += [f"| mean map agreement on {b['edited_images']} edited images "
                  f"(1 - mean abs. difference, edit units) | {b['map_agreement']:.4f} | {a['map_agreement']:.4f} |",
                  f"| map loss on edited images | {b['map_loss']:.4f} | {a['map_loss']:.4f} |",
                  f"| mean correlation of M(x) with the edits (the map's shape) | "
                  f"{b['map_correlation']:.3f} | {a['map_correlation']:.3f} |",
                  f"| accuracy on the edited images | {pct(b.get('edited_accuracy'))} | "
                  f"{pct(a.get('edited_accuracy'))} |"]
    lines += ["", "| class | before | after | change |", "|---|---|---|---|"]
    lines += [f"| {r['class']} | {pct(r['before'])} | {pct(r['after'])} | {pts(r['change'])} |"
              for r in rep["per_class"] if r["before"] is not None or r["after"] is not None]
    md = out / "report.md"
    atomic_write_text(md, "\n".join(lines) + "\n")
    return out / "report.json", md
