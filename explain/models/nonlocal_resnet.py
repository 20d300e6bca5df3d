"""Non-local ResNet (Wang et al., CVPR 2018): embedded-Gaussian Non-local blocks after
chosen stages of a ResNet.

y_i = sum_j softmax_j(theta(x_i)^T phi(x_j)) g(x_j), z = BN(W_z y) + x with the BN scale
initialised to 0, so that each block starts as the identity. The affinity
softmax (B, 1, N, N) over the N = h x w positions is the output of `layerK.non_local.softmax`:
the attention of a query position is its row, on the key grid (the attention methods).
"""
from __future__ import annotations

import torch
from torch import nn

from .arch import architecture
from .resnet import ResNet, resnet_defaults


def nonlocal_defaults(size: int) -> dict:
    """ResNet-20 (ResNet-50 at 224 px) with Non-local blocks after stages 2 and 3 (at 14 x 14
    and 7 x 7 positions for 28 px inputs)."""
    return {**resnet_defaults(size), "nonlocal_stages": (2, 3)}


class NonLocalBlock(nn.Module):
    """Embedded Gaussian Non-local block with an inner width of half the channels."""

    def __init__(self, channels: int, inner: int | None = None):
        super().__init__()
        inner = inner or max(1, channels // 2)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.softmax = nn.Softmax(dim=-1)
        self.w = nn.Conv2d(inner, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        query = self.theta(x).flatten(2).transpose(1, 2)             # (B, N, C')
        key = self.phi(x).flatten(2)                                  # (B, C', N)
        a = self.softmax((query @ key).unsqueeze(1))                  # (B, 1, N, N)
        y = a[:, 0] @ self.g(x).flatten(2).transpose(1, 2)            # (B, N, C')
        return x + self.bn(self.w(y.transpose(1, 2).reshape(b, -1, h, w)))


@architecture("nonlocal_resnet", nonlocal_defaults,
              "Non-local ResNet (Wang et al. 2018), embedded Gaussian",
              attention="layer*.non_local.softmax")
class NonLocalResNet(ResNet):
    """A ResNet whose stages in `nonlocal_stages` (1-based) end with a Non-local block,
    the module `layerK.non_local`."""

    def __init__(self, depths: tuple[int, ...] = (3, 3, 3), widths: tuple[int, ...] = (16, 32, 64),
                 block: str = "basic", num_classes: int = 10, in_channels: int = 3,
                 stem: str = "small", nonlocal_stages: tuple[int, ...] = (2, 3)):
        super().__init__(depths, widths, block, num_classes, in_channels, stem)
        for k in nonlocal_stages:
            self.stage(k).add_module("non_local", NonLocalBlock(widths[k - 1] * self.block.expansion))
