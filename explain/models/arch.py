"""The architecture registry: each model file registers its classes with `@architecture`,
naming what they support (explain.capabilities); `ARCHS` is complete once
`explain.models` is imported.

A checkpoint's card stores `arch` and the exact constructor kwargs, so the network is rebuilt
from this table and the weights loaded into it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

from torch import nn

from ..capabilities import Capabilities, NativeMaps
from ..errors import ExplainError, did_you_mean

C = TypeVar("C", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class Arch:
    """How to build one architecture and what it supports."""
    name: str
    cls: Callable[..., nn.Module]
    defaults: Callable[[int], dict]  # constructor kwargs for an input side (px)
    description: str
    caps: Capabilities

    @property
    def loss(self) -> str:
        return self.caps.loss

    @property
    def native(self) -> dict[str, NativeMaps]:
        return self.caps.native

    def native_layers(self, net: nn.Module) -> dict[str, list[str]]:
        return self.caps.native_layers(net)

    @property
    def map_names(self) -> list[str]:
        """What `explain models` lists as its own maps: the native map methods, and
        `attention` where it declares softmax attention."""
        return sorted(self.native) + (["attention"] if self.caps.attention else [])

    def kwargs(self, num_classes: int, in_channels: int, size: int, **overrides) -> dict:
        kw = {**self.defaults(size), "num_classes": num_classes, "in_channels": in_channels}
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return kw


ARCHS: dict[str, Arch] = {}


def architecture(name: str, defaults: Callable[[int], dict], description: str,
                 **capabilities) -> Callable[[C], C]:
    """Class decorator: register the class as `name` (`explain train --arch name`, cards'
    `arch`), with its default constructor kwargs per input size and its capabilities
    (keywords of explain.capabilities.Capabilities)."""
    def register(cls: C) -> C:
        ARCHS[name] = Arch(name, cls, defaults, description, Capabilities(**capabilities))
        return cls
    return register


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise ExplainError(f"unknown architecture {name!r}{did_you_mean(name, ARCHS)}; choose "
                           f"one of {', '.join(sorted(ARCHS))}", param="arch")
    return ARCHS[name]


def build(arch: str, kwargs: dict) -> nn.Module:
    return get_arch(arch).cls(**kwargs)
