"""CBAM-ResNet (Woo et al., ECCV 2018) with the official module names, so that an official
checkpoint (Jongchan/attention-module, `module.` prefixes, a dict holding `state_dict`) loads
unchanged: `layerX.Y.cbam.ChannelGate.mlp.{1,3}.*`, `...cbam.SpatialGate.spatial.conv.weight`
(1, 2, 7, 7) and `...cbam.SpatialGate.spatial.bn.*`.

The spatial map M_s of each block is the output of the parameter-free module
`layerX.Y.cbam.SpatialGate.sigmoid`, where extractor hooks read it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..capabilities import NativeMaps
from .arch import architecture
from .gated_resnet import GatedResNet, gated_resnet_defaults


class ChannelGate(nn.Module):
    """M_c = sigmoid(MLP(avg-pool F) + MLP(max-pool F)); the MLP C -> C/r -> C is shared.
    `mlp.0` is the official (parameter-free) Flatten, so the linears are `mlp.1`, `mlp.3`."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(),
                                 nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        att = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(att)[:, :, None, None]


class BasicConv(nn.Module):
    """The official conv + BN pair of the spatial gate (BN momentum 0.01, as released)."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SpatialGate(nn.Module):
    """M_s = sigmoid(BN(conv7x7([max_c F; mean_c F]))), channel order max then mean."""

    def __init__(self):
        super().__init__()
        self.spatial = BasicConv(7)
        self.sigmoid = nn.Sigmoid()  # M_s, (B, 1, H, W): the native map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)
        return x * self.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """Channel then spatial attention: F' = M_c * F, F'' = M_s * F'."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.ChannelGate = ChannelGate(channels, reduction)
        self.SpatialGate = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


@architecture("cbam_resnet", gated_resnet_defaults,
              "CBAM-ResNet (Woo et al. 2018), official CBAM parameter names",
              native={"cbam": NativeMaps(
                  "layer*.cbam.SpatialGate.sigmoid", caption="CBAM spatial gate: the sigmoid "
                  "weight the block puts on each position of its features (one map per block)")})
class CBAMResNet(GatedResNet):
    """ResNet with CBAM in every residual block (after the last BN, before the add)."""
    gate_name, gate = "cbam", CBAM

    def _init(self) -> None:
        """As the official code: spatial BN weight 0, so that M_s starts at 0.5 everywhere."""
        super()._init()
        for m in self.modules():
            if isinstance(m, SpatialGate):
                nn.init.zeros_(m.spatial.bn.weight)
            elif isinstance(m, ChannelGate):
                for lin in (m.mlp[1], m.mlp[3]):
                    nn.init.zeros_(lin.bias)
