"""Method registry and the one call shape:

    with Explainer(model, method="gradcam") as ex:
        expl = ex(x, targets=None)

Each method registers itself where it is defined (`@register` in cam.py and
attribution.py); a native method is registered for every map an architecture declares
(explain.models), before them. Importing this package builds the registry, once.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ExplainError, did_you_mean
from ..explanation import Explanation
from ..model import Model
from ..models import ARCHS
from .core import ALIASES, METHODS, Method, Targets, register
from .native import NativeMap, native_method

for _name in dict.fromkeys(n for arch in ARCHS.values() for n in arch.caps.native):
    register(native_method(_name))
# The CAM family, captum's methods and FullGrad, then the attention methods register
# themselves (after the maps: registry order)
from . import cam  # noqa: E402,F401,I001
from . import attribution  # noqa: E402,F401
from . import fullgrad  # noqa: E402,F401
from . import attention  # noqa: E402,F401


def method_class(name: str) -> type[Method]:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in METHODS and any(key in arch.caps.native for arch in ARCHS.values()):
        register(native_method(key))  # an architecture registered after this package
    if key not in METHODS:
        hint = did_you_mean(key, list(METHODS) + list(GROUPS))
        raise ExplainError(f"unknown method {name!r}{hint}; choose from "
                           f"{', '.join(sorted(METHODS))}", param="method")
    return METHODS[key]


GROUPS = ("all", "native", "cam-family")  # words `select` expands


def select(model: Model, spec: str | Sequence[str] | None = None) -> list[str]:
    """The methods `spec` asks of `model`, as registered names, in order, each once: the one
    reading of --methods for every command, benchmark and test.

    None: the model's native maps, its raw attention where it has attention layers, then
    gradcam. Otherwise method names or aliases (comma-separated, or a list), where "all"
    stands for every method the model can give, "native" for its native maps and
    "cam-family" for the CAM family. A method the model cannot give (a native map it does
    not have, attention without attention layers) is refused."""
    if spec is None:
        return sorted(model.native) + [n for n in ("attention",)
                                       if METHODS[n].unavailable(model) is None] + ["gradcam"]
    words = [w.strip() for w in (spec.split(",") if isinstance(spec, str) else spec) if w.strip()]
    if not words:
        raise ExplainError("empty list", param="methods")
    groups = {"all": [n for n, cls in METHODS.items() if cls.unavailable(model) is None],
              "native": sorted(model.native),
              "cam-family": [n for n, cls in METHODS.items() if cls.family == "cam"]}
    names = [n for w in words
             for n in (groups[w.lower()] if w.lower() in groups else [method_class(w).name])]
    for n in names:
        reason = METHODS[n].unavailable(model)
        if reason:
            raise ExplainError(reason, param="methods")
    return list(dict.fromkeys(names))


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


__all__ = ["ALIASES", "Explainer", "GROUPS", "METHODS", "Method", "NativeMap", "method_class",
           "select"]
