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
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .catalog import ALIASES, DEFAULT_MODEL, EFFICIENTNET_CARD, ZOO, list_models, listings
from .checkpoint import load_checkpoint
from .errors import ExplainError, did_you_mean
from .model import Model
from .models import build, get_arch
from .official import OFFICIAL
from .preprocess import IMAGENET, InputSpec
from .weights import load_weights, read_state_dict

__all__ = ["ALIASES", "DEFAULT_MODEL", "ZOO", "Entry", "Model", "arch_model", "create_model",
           "from_checkpoint", "imagenet_classes", "list_models", "registry"]


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
                 card=dict(EFFICIENTNET_CARD))


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
    loaders: dict[str, Callable[[str | None], Model]] = {DEFAULT_MODEL: _efficientnet_lite0}
    loaders.update({n: lambda w, n=n: _official(n, w) for n in OFFICIAL})
    entries = {}
    for name, listing in listings().items():
        load = loaders.get(name) or (lambda w, d=ZOO / name, n=name: from_checkpoint(d, w, n))
        entries[name] = Entry(load, listing.description, listing.card)
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
        known = sorted(list(entries) + list(ALIASES))
        raise ExplainError(f"unknown model {name!r}{did_you_mean(name, known)}; known: "
                           f"{', '.join(known)}; or a checkpoint folder, torchvision:ARCH, "
                           "package.module:function", param="model")
    return model.to(device)
