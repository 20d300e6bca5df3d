"""Image files -> model -> Explanations: the shared path of the CLI, the gallery and the editor.

`Batch` keeps what rendering needs (the view the model saw, the geometry back to the
original) next to the input tensor.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ImageError
from .explanation import Explanation
from .images import load_image
from .methods import Explainer
from .preprocess import Geometry
from .registry import Model


@dataclass
class Batch:
    paths: list[Path]
    x: torch.Tensor            # (B, C, H, W) normalised
    views: np.ndarray          # (B, H, W, 3) uint8, what the model saw
    geometry: list[Geometry]


def prepare(model: Model, paths: list[Path]) -> tuple[Batch | None, list[tuple[Path, str]]]:
    """Load and preprocess `paths`; unreadable ones are returned as (path, message)."""
    ok, errors, xs, views, geoms = [], [], [], [], []
    for p in paths:
        try:
            rgb = load_image(p)
        except ImageError as e:
            errors.append((p, str(e)))
            continue
        x, view, geom = model.input(rgb)
        ok.append(p)
        xs.append(x)
        views.append(view)
        geoms.append(geom)
    if not ok:
        return None, errors
    return Batch(ok, torch.stack(xs), np.stack(views), geoms), errors


def explain_batch(model: Model, x: torch.Tensor, methods: list[str], layer: str | None = None,
                  targets=None, **options) -> dict[str, Explanation]:
    """Run every method on the same batch (tensors stay on the model's device)."""
    x = x.to(model.device)
    out = {}
    for name in methods:
        with Explainer(model, name, layer=layer if name != "abn" else None, **options) as ex:
            out[name] = ex(x, targets)
    return out
