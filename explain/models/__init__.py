"""Architectures that `explain train` can build and checkpoints can name.

A checkpoint's card stores `arch` and the exact constructor kwargs, so the network is rebuilt
from this table and the weights loaded into it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ..errors import ExplainError
from .abn import ABNResNet
from .resnet import ResNet


def resnet_defaults(size: int) -> dict:
    """ResNet-20 (CIFAR-style) for small inputs; ResNet-50 layout at ImageNet sizes."""
    if size <= 64:
        return {"depths": (3, 3, 3), "widths": (16, 32, 64), "block": "basic", "stem": "small"}
    return {"depths": (3, 4, 6, 3), "widths": (64, 128, 256, 512), "block": "bottleneck",
            "stem": "imagenet"}


@dataclass(frozen=True)
class Arch:
    """How to build one architecture and what it exposes."""
    cls: Callable[..., nn.Module]
    defaults: Callable[[int], dict]
    loss: str                      # key into explain.losses.LOSSES
    description: str
    native: dict[str, str] = field(default_factory=dict)  # method name -> module path

    def kwargs(self, num_classes: int, in_channels: int, size: int, **overrides) -> dict:
        kw = {**self.defaults(size), "num_classes": num_classes, "in_channels": in_channels}
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return kw


ARCHS: dict[str, Arch] = {
    "resnet": Arch(ResNet, resnet_defaults, "ce",
                   "plain ResNet (CIFAR-style stem for <=64 px, torchvision layout above)"),
    "abn_resnet": Arch(ABNResNet, resnet_defaults, "abn",
                       "Attention Branch Network on ResNet (Fukui et al. 2019)",
                       native={"abn": "att_map"}),
}


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise ExplainError(f"--arch: unknown architecture {name!r}; choose one of "
                           f"{', '.join(sorted(ARCHS))}")
    return ARCHS[name]


def build(arch: str, kwargs: dict) -> nn.Module:
    return get_arch(arch).cls(**kwargs)
