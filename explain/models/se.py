"""SE-ResNet (Hu et al., CVPR 2018): squeeze-and-excitation in every residual block.

s = sigmoid(W2 ReLU(W1 GAP(u))), C -> C/r -> C without biases, scales the residual branch
before the add. Names follow the common PyTorch port (`layerX.Y.se.fc.{0,2}.weight`); the
excitation vector s (B, C) is the output of `layerX.Y.se.fc`, where extractor hooks read it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..capabilities import NativeMaps
from .arch import architecture
from .gated_resnet import GatedResNet, gated_resnet_defaults


class SELayer(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(hidden, channels, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


@architecture("se_resnet", gated_resnet_defaults, "SE-ResNet (Hu et al. 2018)",
              native={"se": NativeMaps(
                  "layer*.se.fc", kind="vector", caption="SE excitation: the sigmoid weight "
                  "the block gives each channel, one bar per channel (no spatial map)")})
class SEResNet(GatedResNet):
    """ResNet with an SE layer in every residual block."""
    gate_name, gate = "se", SELayer
