"""Image files -> model -> Explanations: the shared path of the CLI, the gallery and the editor.

`Batch` keeps what rendering needs (the original photos, the view the model saw, the
geometry from one to the other) next to the input tensor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import ExplainError, ImageError
from .explanation import Explanation
from . import domain
from .images import read_image
from .methods import Explainer, method_class
from .methods.core import find_module
from .preprocess import Geometry
from .model import Model


@dataclass
class Batch:
    paths: list[Path]
    x: torch.Tensor            # (B, C, H, W) normalised
    views: np.ndarray          # (B, H, W, 3) uint8, what the model saw
    geometry: list[Geometry]
    images: list[np.ndarray]   # the original photos, (H_i, W_i, 3) uint8 each
    outside: list[list[str]] = field(default_factory=list)  # why each is outside the domain

    def subset(self, keep: list[int]) -> "Batch":
        pick = (lambda items: [items[k] for k in keep] if items else items)
        return Batch(pick(self.paths), self.x[keep], self.views[keep], pick(self.geometry),
                     pick(self.images), pick(self.outside))


def prepare(model: Model, paths: list[Path]) -> tuple[Batch | None, list[tuple[Path, str]]]:
    """Load and preprocess `paths`; unreadable ones (and ones the model cannot be shown,
    explain.domain) are returned as (path, message). Each image keeps the reasons it is
    outside the model's domain ([] when it fits)."""
    ok, errors, xs, views, geoms, images, outside = [], [], [], [], [], [], []
    for p in paths:
        try:
            rgb, mode = read_image(p)
            reasons = domain.check(model.input, rgb, mode, str(p))
        except ImageError as e:
            errors.append((p, str(e)))
            continue
        x, view, geom = model.input(rgb)
        ok.append(p)
        xs.append(x)
        views.append(view)
        geoms.append(geom)
        images.append(rgb)
        outside.append(reasons)
    if not ok:
        return None, errors
    return Batch(ok, torch.stack(xs), np.stack(views), geoms, images, outside), errors


def own_layers_of(model: Model, methods: list[str]) -> dict[str, list[str]]:
    """method -> the layers it reads its maps at where it has its own (a native method's
    maps, an attention method's attention layers); [] for methods that take any layer."""
    return {name: method_class(name).own_layers(model) for name in methods}


def check_layer(model: Model, methods: list[str], layer: str | None) -> None:
    """Refuse, without running the model, a `layer` that `methods` cannot use: every one
    reads its own layers and it names none of them, or a CAM-family method would hook a
    module the network does not have."""
    if layer is None:
        return
    own = own_layers_of(model, methods)
    if all(maps and layer not in maps for maps in own.values()):
        listing = "; ".join(f"{n}: {', '.join(m)}" for n, m in own.items())
        raise ExplainError(f"model {model.name!r} has no map at {layer!r} ({listing})", param="layer")
    if any(not maps for maps in own.values()):
        find_module(model.net, layer)


def explain_batch(model: Model, x: torch.Tensor, methods: list[str], layer: str | None = None,
                  targets=None, all_maps: bool = False, **options) -> dict[str, Explanation]:
    """Run every method on the same batch (tensors stay on the model's device).

    `layer` goes to every CAM-family method; a method with its own layers (native maps,
    attention layers) takes it only where it names one of them, and otherwise gives its
    default map. With `all_maps`, a method gives every map it has (RAN modules, CBAM
    blocks, attention layers and heads, ...) keyed `method@label`, or those of the layer
    named. `options` go to every method (`query` to the attention methods, ...).
    """
    own = own_layers_of(model, methods)
    x = x.to(model.device)
    out = {}
    for name in methods:
        mine = layer if not own[name] or layer in own[name] else None
        with Explainer(model, name, layer=mine, **options) as ex:
            out.update(ex.all_maps(x, targets) if all_maps else {name: ex(x, targets)})
    return out
