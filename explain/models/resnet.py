"""ResNets for small inputs (CIFAR-style stem) and for 224 px (torchvision stem and names).

Block classes come from torchvision so that parameter names match torchvision's and the
official ABN code (`layerX.Y.convZ`, `downsample.0/1`, `fc`).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from .arch import architecture

BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
Stem = Literal["small", "imagenet"]


def resnet_defaults(size: int) -> dict:
    """ResNet-20 (CIFAR-style) for small inputs; ResNet-50 layout at ImageNet sizes."""
    if size <= 64:
        return {"depths": (3, 3, 3), "widths": (16, 32, 64), "block": "basic", "stem": "small"}
    return {"depths": (3, 4, 6, 3), "widths": (64, 128, 256, 512), "block": "bottleneck",
            "stem": "imagenet"}


def make_stage(block: type[nn.Module], inplanes: int, planes: int, blocks: int,
               stride: int) -> nn.Sequential:
    """One residual stage; the first block projects when stride or width change."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


@architecture("resnet", resnet_defaults,
              "plain ResNet (CIFAR-style stem for <=64 px, torchvision layout above)")
class ResNet(nn.Module):
    """Plain ResNet. `small`: 3x3 stem, no max-pool, stages at 1, 1/2, 1/4 of the input
    (widths 16/32/64 by default); `imagenet`: 7x7/2 stem + max-pool, four stages."""

    def __init__(self, depths: tuple[int, ...] = (3, 3, 3), widths: tuple[int, ...] = (16, 32, 64),
                 block: str | type[nn.Module] = "basic", num_classes: int = 10,
                 in_channels: int = 3, stem: Stem = "small"):
        super().__init__()
        # A block class (not only a name) lets subclasses put gates in the blocks (SE, CBAM).
        self.block = BLOCKS[block] if isinstance(block, str) else block
        self.stem_kind = stem
        self.num_stages = len(depths)
        if stem == "small":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        inplanes = widths[0]
        self.stage_inplanes: list[int] = []
        for i, (d, w) in enumerate(zip(depths, widths)):
            self.stage_inplanes.append(inplanes)
            setattr(self, f"layer{i + 1}", make_stage(self.block, inplanes, w, d, 1 if i == 0 else 2))
            inplanes = w * self.block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def cam_layer(self) -> str:
        """Default CAM-family target: the last stage (the perception branch's, for ABN)."""
        return f"layer{self.num_stages}"

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.maxpool(x) if self.stem_kind == "imagenet" else x

    def stage(self, i: int) -> nn.Sequential:
        return getattr(self, f"layer{i}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and every stage but the last: the ABN feature extractor g(x)."""
        x = self.stem(x)
        for i in range(1, self.num_stages):
            x = self.stage(i)(x)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Last stage, pooling and classifier: the ABN perception branch."""
        x = self.stage(self.num_stages)(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
