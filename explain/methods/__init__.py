"""Method registry and the one call shape:

    with Explainer(model, method="gradcam") as ex:
        expl = ex(x, targets=None)

Each method registers itself where it is defined (`@register` in cam.py, attribution.py,
native.py); importing this package imports them all, once.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ExplainError
from ..explanation import Explanation
from ..model import Model
from . import native, cam, attribution  # noqa: F401  (registration order: natives first)
from .core import ALIASES, METHODS, Method, Targets
from .native import NativeMap


def method_class(name: str) -> type[Method]:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in METHODS:
        raise ExplainError(f"unknown method {name!r}; choose from "
                           f"{', '.join(sorted(METHODS))}", param="method")
    return METHODS[key]


class Explainer:
    """`method` on `model` (a registry Model or a plain nn.Module), called as
    `ex(x, targets)` -> Explanation, or `ex.all_maps(x)` for every map of the method.

    A call on its own puts the model in eval mode and hooks its layer for that call only.
    Inside `with Explainer(...) as ex:` both hold for the whole block: calls reuse the hook,
    and leaving the block (also by an exception) removes it and restores the model's mode.
    """

    def __init__(self, model: Model | nn.Module, method: str = "gradcam",
                 layer: str | None = None, **options: Any):
        self.method = method_class(method)(model, layer=layer, **options)
        self._session: Any = None

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def layer(self) -> str | None:
        """The target layer: as given, or as resolved by the first call."""
        return self.method.layer

    def __call__(self, x: torch.Tensor, targets: Targets = None) -> Explanation:
        return self.method(x, targets)

    def all_maps(self, x: torch.Tensor, targets: Targets = None) -> dict[str, Explanation]:
        return self.method.all_maps(x, targets)

    def __enter__(self) -> "Explainer":
        self._session = self.method.session()
        self._session.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        session, self._session = self._session, None
        session.__exit__(*exc)


__all__ = ["ALIASES", "Explainer", "METHODS", "Method", "NativeMap", "method_class"]
