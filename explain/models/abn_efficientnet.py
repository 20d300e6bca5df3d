"""ABN on a pretrained backbone: EfficientNet-Lite0's ImageNet features, new attention branch.

Split as in ABN-ResNet at stride 16: the feature extractor g(x) is the stem and blocks 0-10
(112 channels at 14x14 for 224 px); the perception branch is blocks 11-15, the head
convolution and a new classifier. The attention trunk is a stride-1 copy of blocks 11-15,
initialised from their ImageNet weights; the ABN head keeps the official names.
"""
from __future__ import annotations

import copy

import torch
from efficientnet_lite_pytorch.model import MBConvBlock
from torch import nn

from .abn import ABNOutput
from .efficientnet import EfficientNetLite0, weights_path
from ..weights import read_state_dict

SPLIT = 11  # first block of the perception branch


class ABNEfficientNetLite0(nn.Module):
    cam_layer = "backbone.head_act"

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224):
        super().__init__()
        if in_channels != 3:
            raise ValueError("abn_efficientnet_lite0 takes RGB input (in_channels=3)")
        self.backbone = EfficientNetLite0(num_classes=num_classes)
        size = (image_size // 16, image_size // 16)
        params = self.backbone._global_params
        self.att_layer = nn.ModuleList(
            MBConvBlock(b._block_args._replace(stride=1), params, image_size=size)
            for b in self.backbone._blocks[SPLIT:])
        channels = self.backbone._blocks[-1]._block_args.output_filters
        self.bn_att = nn.BatchNorm2d(channels)
        self.att_conv = nn.Conv2d(channels, num_classes, 1, bias=False)
        self.bn_att2 = nn.BatchNorm2d(num_classes)
        self.att_conv2 = nn.Conv2d(num_classes, num_classes, 1, bias=False)
        self.att_conv3 = nn.Conv2d(num_classes, 1, 3, padding=1, bias=False)
        self.bn_att3 = nn.BatchNorm2d(1)
        self.relu = nn.ReLU(inplace=True)
        self.att_map = nn.Sigmoid()

    def load_pretrained(self) -> None:
        """ImageNet weights into the backbone (all but the classifier); the attention trunk
        starts as a copy of the perception blocks it mirrors."""
        sd = {k: v for k, v in read_state_dict(weights_path()).items() if not k.startswith("_fc.")}
        missing = self.backbone.load_state_dict(sd, strict=False).missing_keys
        assert set(missing) <= {"_fc.weight", "_fc.bias"}, missing
        for att, per in zip(self.att_layer, self.backbone._blocks[SPLIT:]):
            att.load_state_dict(copy.deepcopy(per.state_dict()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.stem_and_blocks(x, upto=SPLIT)

    def attention(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = g
        for block in self.att_layer:
            a = block(a)
        a = self.relu(self.bn_att2(self.att_conv(self.bn_att(a))))
        att = self.att_map(self.bn_att3(self.att_conv3(a)))
        return self.att_conv2(a).mean(dim=(2, 3)), att

    def perceive(self, g: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        x = g * att + g
        for block in self.backbone._blocks[SPLIT:]:
            x = block(x)
        b = self.backbone
        x = b.head_act(b._bn1(b._conv_head(x)))
        return b._fc(b._dropout(torch.flatten(b._avg_pooling(x), 1)))

    def forward_all(self, x: torch.Tensor, att: torch.Tensor | None = None) -> ABNOutput:
        g = self.features(x)
        att_logits, m = self.attention(g)
        if att is not None and att.shape[-2:] != m.shape[-2:]:
            att = nn.functional.interpolate(att, size=m.shape[-2:], mode="bilinear",
                                            align_corners=False)
        return ABNOutput(self.perceive(g, m if att is None else att.to(g.dtype)), att_logits, m)

    def forward(self, x: torch.Tensor, att: torch.Tensor | None = None,
                outputs: str = "logits") -> torch.Tensor | ABNOutput:
        """Perception logits; `outputs="all"` returns the ABNOutput (the trainer asks for it
        through forward, so that a DDP wrapper sees the call and synchronises gradients)."""
        out = self.forward_all(x, att)
        return out if outputs == "all" else out.logits
