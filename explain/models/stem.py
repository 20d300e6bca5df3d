"""The input stem shared by the pre-activation networks (RAN, Wide ResNet)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Stem(nn.Module):
    """`small`: conv3x3 -> BN -> ReLU at full resolution (28-64 px inputs); `imagenet`:
    conv7x7/2 -> BN -> ReLU -> max-pool 3x3/2, a quarter of the input (224 px)."""

    def __init__(self, in_channels: int, width: int, kind: str = "small"):
        super().__init__()
        if kind not in ("small", "imagenet"):
            raise ValueError(f"stem must be small or imagenet, not {kind!r}")
        k, stride = (3, 1) if kind == "small" else (7, 2)
        self.conv = nn.Conv2d(in_channels, width, k, stride=stride, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1) if kind == "imagenet" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.bn(self.conv(x))))
