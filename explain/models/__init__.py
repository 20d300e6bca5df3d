"""Architectures that `explain train` can build and checkpoints can name.

A checkpoint's card stores `arch` and the exact constructor kwargs, so the network is rebuilt
from this table and the weights loaded into it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import partial
from typing import Callable

from torch import nn

from ..errors import ExplainError
from .abn import ABNResNet
from .abn_efficientnet import ABNEfficientNetLite0
from .attend_rectify import AttendRectifyWRN
from .bayes_abn import BayesABNResNet
from .cbam import CBAMResNet
from .ran import ResidualAttentionNet, ran_defaults
from .resnet import ResNet
from .se import SEResNet


def resnet_defaults(size: int) -> dict:
    """ResNet-20 (CIFAR-style) for small inputs; ResNet-50 layout at ImageNet sizes."""
    if size <= 64:
        return {"depths": (3, 3, 3), "widths": (16, 32, 64), "block": "basic", "stem": "small"}
    return {"depths": (3, 4, 6, 3), "widths": (64, 128, 256, 512), "block": "bottleneck",
            "stem": "imagenet"}


def gated_resnet_defaults(size: int) -> dict:
    """ResNet layouts with SE/CBAM gates: the official reduction 16 at ImageNet sizes; 4 for
    small inputs, where 16 would leave the 16-channel stage one hidden unit."""
    return {**resnet_defaults(size), "reduction": 4 if size <= 64 else 16}


def wrn_defaults(size: int) -> dict:
    """WRN-22-1 for small inputs (pre-activation ResNet-20-like, 16/32/64 wide); WRN-18-2 at
    ImageNet sizes."""
    if size <= 64:
        return {"depths": (3, 3, 3), "widths": (16, 32, 64), "stem": "small"}
    return {"depths": (2, 2, 2, 2), "widths": (128, 256, 512, 1024), "stem": "imagenet"}


@dataclass(frozen=True)
class Arch:
    """How to build one architecture and what it exposes."""
    cls: Callable[..., nn.Module]
    defaults: Callable[[int], dict]
    loss: str                      # key into explain.losses.LOSSES
    description: str
    # native method name -> module path pattern (fnmatch); every module whose path matches
    # gives one map, in forward order (see `native_layers`)
    native: dict[str, str] = field(default_factory=dict)

    def native_layers(self, net: nn.Module) -> dict[str, list[str]]:
        """method -> the module paths of `net` that give its maps, shallow to deep."""
        names = [n for n, _ in net.named_modules()]
        return {m: [n for n in names if fnmatchcase(n, pat)] for m, pat in self.native.items()}

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
    "abn_efficientnet_lite0": Arch(ABNEfficientNetLite0, lambda size: {"image_size": size}, "abn",
                                   "ABN on ImageNet-pretrained EfficientNet-Lite0 (224 px RGB)",
                                   native={"abn": "att_map"}),
    "ran": Arch(ResidualAttentionNet, ran_defaults, "ce",
                "Residual Attention Network (Wang et al. 2017): Attention-56 at 224 px",
                native={"ran": "layer*.mask"}),
    "ran92": Arch(ResidualAttentionNet, partial(ran_defaults, depths_224=(1, 2, 3, 0)), "ce",
                  "Residual Attention Network: Attention-92 at 224 px",
                  native={"ran": "layer*.mask"}),
    "cbam_resnet": Arch(CBAMResNet, gated_resnet_defaults, "ce",
                        "CBAM-ResNet (Woo et al. 2018), official CBAM parameter names",
                        native={"cbam": "layer*.cbam.SpatialGate.sigmoid"}),
    "se_resnet": Arch(SEResNet, gated_resnet_defaults, "ce",
                      "SE-ResNet (Hu et al. 2018)", native={"se": "layer*.se.fc"}),
    "attend_rectify": Arch(AttendRectifyWRN, wrn_defaults, "attend_rectify",
                           "Attend and Rectify on a Wide ResNet (Rodriguez et al. 2018)",
                           native={"attend_rectify": "attention.*.gated_heads"}),
    "bayes_abn_resnet": Arch(BayesABNResNet, resnet_defaults, "abn",
                             "Bayesian ABN: ABN with Monte-Carlo dropout (Tsukahara et al. 2020)",
                             native={"bayes_abn": "att_map", "abn": "att_map"}),
}


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise ExplainError(f"unknown architecture {name!r}; choose one of "
                           f"{', '.join(sorted(ARCHS))}", param="arch")
    return ARCHS[name]


def build(arch: str, kwargs: dict) -> nn.Module:
    return get_arch(arch).cls(**kwargs)
