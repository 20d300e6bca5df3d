"""Method registry and the one call shape:

    with Explainer(model, method="gradcam") as ex:
        expl = ex(x, targets=None)
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ExplainError
from ..registry import Model
from .attribution import GuidedGradCAM, IntegratedGradients, Occlusion, Saliency
from .cam import CAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
from .core import Method
from .native import ABNMap, AttendRectifyMap, BayesABNMap, CBAMMap, NativeMap, RANMap, SEMap

METHODS: dict[str, type[Method]] = {m.name: m for m in (
    ABNMap, RANMap, CBAMMap, SEMap, AttendRectifyMap, BayesABNMap,
    CAM, GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, ScoreCAM,
    IntegratedGradients, Saliency, Occlusion, GuidedGradCAM)}
ALIASES = {"grad-cam": "gradcam", "gradcam++": "gradcampp", "ig": "integrated_gradients",
           "guided-gradcam": "guided_gradcam", "score-cam": "scorecam",
           "attend-and-rectify": "attend_rectify", "bayesian_abn": "bayes_abn"}


def method_class(name: str) -> type[Method]:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in METHODS:
        raise ExplainError(f"--methods: unknown method {name!r}; choose from "
                           f"{', '.join(sorted(METHODS))}")
    return METHODS[key]


def Explainer(model: Model | nn.Module, method: str = "gradcam", layer: str | None = None,
              **options: Any) -> Method:
    """An extractor for `method` on `model` (a registry Model or a plain nn.Module)."""
    return method_class(method)(model, layer=layer, **options)


__all__ = ["Explainer", "METHODS", "Method", "NativeMap", "method_class"]
