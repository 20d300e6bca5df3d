"""ResNet blocks with a gate on the residual branch (SE, CBAM).

Both put their gate after the branch's last BatchNorm and before the identity add, inside
torchvision's BasicBlock/Bottleneck, so every other parameter keeps its torchvision name.
"""
from __future__ import annotations

from typing import Callable, ClassVar

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from .resnet import BLOCKS, ResNet, resnet_defaults


def gated_resnet_defaults(size: int) -> dict:
    """ResNet layouts with SE/CBAM gates: the official reduction 16 at ImageNet sizes; 4 for
    small inputs, where 16 would leave the 16-channel stage one hidden unit."""
    return {**resnet_defaults(size), "reduction": 4 if size <= 64 else 16}


def residual_branch(block: BasicBlock | Bottleneck, x: torch.Tensor) -> torch.Tensor:
    """The block's residual branch up to (and including) its last BatchNorm."""
    out = block.relu(block.bn1(block.conv1(x)))
    if isinstance(block, Bottleneck):
        out = block.relu(block.bn2(block.conv2(out)))
        return block.bn3(block.conv3(out))
    return block.bn2(block.conv2(out))


def gated_block(kind: str, name: str, make_gate: Callable[[int], nn.Module]) -> type[nn.Module]:
    """A subclass of the `kind` block ("basic" or "bottleneck") whose residual branch ends in
    the module `name` = make_gate(channels)."""
    base = BLOCKS[kind]

    class Gated(base):  # type: ignore[valid-type, misc]
        def __init__(self, inplanes: int, planes: int, stride: int = 1,
                     downsample: nn.Module | None = None):
            super().__init__(inplanes, planes, stride, downsample)
            self.add_module(name, make_gate(planes * base.expansion))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(getattr(self, name)(residual_branch(self, x)) + identity)

    Gated.__name__ = Gated.__qualname__ = f"{name.upper()}{base.__name__}"
    return Gated


class GatedResNet(ResNet):
    """ResNet whose every block carries `gate(channels, reduction)` as the module `gate_name`."""
    gate_name: ClassVar[str]
    gate: ClassVar[Callable[[int, int], nn.Module]]

    def __init__(self, depths: tuple[int, ...] = (3, 3, 3), widths: tuple[int, ...] = (16, 32, 64),
                 block: str = "basic", num_classes: int = 10, in_channels: int = 3,
                 stem: str = "small", reduction: int = 16):
        make = type(self).gate
        super().__init__(depths, widths, gated_block(block, self.gate_name, lambda c: make(c, reduction)),
                         num_classes, in_channels, stem)
