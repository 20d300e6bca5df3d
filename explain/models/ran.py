"""Residual Attention Network (Wang et al., CVPR 2017).

An attention module (hyper-parameters p, t, r) runs p pre-activation bottleneck units, then
splits into a trunk of t units, T(x), and a bottom-up top-down soft-mask branch, M(x) (same
shape as T), merges them by attention residual learning H = (1 + M) * T, and runs p more
units. The mask branch max-pools `poolings` times (r units after each, 2r at the lowest
resolution, a skip unit from each level but the lowest to the matching top-down level),
upsamples bilinearly back, then BN-ReLU-1x1, BN-ReLU-1x1 and the mask activation:
mixed f = sigmoid(x) (default), channel f = x / ||x|| over channels at each position, or
spatial f = sigmoid of x standardised over each channel's positions.

M(x) of every module is the output of its `mask` sub-module, where extractor hooks read it.

Layouts: Attention-56 (`depths` = attention modules per stage 1,1,1,0) and Attention-92
(1,2,3,0) at 224 px, stages at 56/28/14/7 px with 3/2/1/0 poolings; a small variant for
28-64 px inputs with three stages at 1, 1/2, 1/4 of the input and 2/1/1 poolings.
"""
from __future__ import annotations

from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..capabilities import NativeMaps
from .arch import architecture
from .stem import Stem

Activation = Literal["mixed", "channel", "spatial"]


class ResidualUnit(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1(C/4), BN-ReLU-3x3(C/4, stride), BN-ReLU-1x1(C);
    a 1x1 projection of the activated input where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        mid = max(1, cout // 4)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(x))
        out = self.conv1(a)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.shortcut is None else self.shortcut(a))


def units(channels: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[ResidualUnit(channels, channels) for _ in range(n)])


class MaskActivation(nn.Module):
    """The soft mask's last step: mixed, channel or spatial attention."""

    def __init__(self, kind: Activation = "mixed", eps: float = 1e-5):
        super().__init__()
        if kind not in ("mixed", "channel", "spatial"):
            raise ValueError(f"RAN activation must be mixed, channel or spatial, not {kind!r}")
        self.kind, self.eps = kind, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "channel":
            return F.normalize(x, dim=1, eps=self.eps)
        if self.kind == "spatial":
            mean = x.mean(dim=(2, 3), keepdim=True)
            std = x.std(dim=(2, 3), keepdim=True)
            return torch.sigmoid((x - mean) / (std + self.eps))
        return torch.sigmoid(x)

    def extra_repr(self) -> str:
        return self.kind


class SoftMask(nn.Module):
    """Bottom-up top-down mask branch; output M(x), (B, C, H, W)."""

    def __init__(self, channels: int, poolings: int, r: int = 1, activation: Activation = "mixed"):
        super().__init__()
        if poolings < 1:
            raise ValueError("a RAN attention module needs at least one pooling in its mask")
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.down = nn.ModuleList(units(channels, 2 * r if i == poolings - 1 else r)
                                  for i in range(poolings))
        self.skips = nn.ModuleList(ResidualUnit(channels, channels) for _ in range(poolings - 1))
        self.up = nn.ModuleList(units(channels, r) for _ in range(poolings - 1))
        self.head = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1, bias=False))
        self.act = MaskActivation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes, skips = [x.shape[-2:]], []
        h = x
        for i, down in enumerate(self.down):
            h = down(self.pool(h))
            if i < len(self.skips):
                skips.append(self.skips[i](h))
                sizes.append(h.shape[-2:])
        for i in reversed(range(len(self.up))):
            h = F.interpolate(h, size=sizes[i + 1], mode="bilinear", align_corners=False)
            h = self.up[i](h + skips[i])
        h = F.interpolate(h, size=sizes[0], mode="bilinear", align_corners=False)
        return self.act(self.head(h))


class AttentionModule(nn.Module):
    """p units -> (trunk T, mask M) -> (1 + M) * T -> p units."""

    def __init__(self, channels: int, poolings: int, p: int = 1, t: int = 2, r: int = 1,
                 activation: Activation = "mixed"):
        super().__init__()
        self.pre = units(channels, p)
        self.trunk = units(channels, t)
        self.mask = SoftMask(channels, poolings, r, activation)
        self.post = units(channels, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        return self.post((1 + self.mask(x)) * self.trunk(x))


def ran_defaults(size: int, depths_224: tuple[int, ...] = (1, 1, 1, 0)) -> dict:
    """Attention-56 layout at ImageNet sizes (`depths_224`=(1, 2, 3, 0) gives Attention-92);
    for <= 64 px three stages of widths 32/64/128 (bottleneck inner 8/16/32), which trains at
    about the cost of ABN-ResNet-20 (0.22M parameters)."""
    if size <= 64:
        return {"depths": depths_224[:3], "widths": (32, 64, 128),
                "units": (1, 1, 1), "poolings": (2, 1, 1), "stem": "small"}
    return {"depths": depths_224, "widths": (256, 512, 1024, 2048), "units": (1, 1, 1, 3),
            "poolings": (3, 2, 1, 0), "stem": "imagenet"}


RAN_MAPS = NativeMaps("layer*.mask", channel_mean=True, caption="RAN soft mask: the channel "
                     "mean of the module's sigmoid mask, (1 + M) * trunk; soft attention over "
                     "features, so it can be high on background")


@architecture("ran92", partial(ran_defaults, depths_224=(1, 2, 3, 0)),
              "Residual Attention Network: Attention-92 at 224 px",
              native={"ran": RAN_MAPS})
@architecture("ran", ran_defaults,  # (decorators apply bottom-up: ran registers first)
              "Residual Attention Network (Wang et al. 2017): Attention-56 at 224 px",
              native={"ran": RAN_MAPS})
class ResidualAttentionNet(nn.Module):
    """Stem -> stages `layer1..N` (each: `units[i]` >= 1 residual units, the first with the
    stage's stride, then `depths[i]` attention modules with `poolings[i]` poolings) -> BN-ReLU ->
    global average pool -> fc. Residual units are bottlenecks with C/4 inner channels."""

    def __init__(self, depths: tuple[int, ...] = (1, 1, 1), widths: tuple[int, ...] = (32, 64, 128),
                 units: tuple[int, ...] = (1, 1, 1), poolings: tuple[int, ...] = (2, 1, 1),
                 p: int = 1, t: int = 2, r: int = 1, activation: Activation = "mixed",
                 num_classes: int = 10, in_channels: int = 3, stem: str = "small"):
        super().__init__()
        if not len(depths) == len(widths) == len(units) == len(poolings):
            raise ValueError("RAN: depths, widths, units and poolings need one entry per stage")
        stem_width = max(1, widths[0] // 4)
        self.stem = Stem(in_channels, stem_width, stem)
        self.num_stages = len(depths)
        cin = stem_width
        for i, (m, w, u, pools) in enumerate(zip(depths, widths, units, poolings)):
            layers = [ResidualUnit(cin if j == 0 else w, w, 1 if i == 0 or j else 2)
                      for j in range(max(1, u))]
            layers += [AttentionModule(w, pools, p, t, r, activation) for _ in range(m)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            cin = w
        self.bn_out = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    @property
    def cam_layer(self) -> str:
        return f"layer{self.num_stages}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        x = F.relu(self.bn_out(x))
        return self.fc(x.mean(dim=(2, 3)))
