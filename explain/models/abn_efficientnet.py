"""ABN on a pretrained backbone: EfficientNet-Lite0's ImageNet features, new attention branch.

Split as in ABN-ResNet at stride 16: the feature extractor g(x) is the stem and blocks 0-10
(112 channels at 14x14 for 224 px); the perception branch is blocks 11-15, the head
convolution and a new classifier. The attention trunk is a stride-1 copy of blocks 11-15,
initialised from their ImageNet weights; the head is explain.models.abn_head's, with the
official names.
"""
from __future__ import annotations

import copy

import torch
from efficientnet_lite_pytorch.model import MBConvBlock
from torch import nn

from ..weights import read_state_dict
from .abn_head import ABN_MAPS, ABNHead
from .arch import architecture
from .efficientnet import EfficientNetLite0, weights_path

SPLIT = 11  # first block of the perception branch


@architecture("abn_efficientnet_lite0", lambda size: {"image_size": size},
              "ABN on ImageNet-pretrained EfficientNet-Lite0 (224 px RGB)",
              native={"abn": ABN_MAPS}, rescore="abn", feature_split=True,
              loss="abn")
class ABNEfficientNetLite0(ABNHead):
    cam_layer = "backbone.head_act"

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224,
                 residual: bool = True):
        super().__init__()
        if in_channels != 3:
            raise ValueError("abn_efficientnet_lite0 takes RGB input (in_channels=3)")
        self.residual = residual
        self.backbone = EfficientNetLite0(num_classes=num_classes)
        size = (image_size // 16, image_size // 16)
        params = self.backbone._global_params
        self.att_layer = nn.ModuleList(
            MBConvBlock(b._block_args._replace(stride=1), params, image_size=size)
            for b in self.backbone._blocks[SPLIT:])
        self.add_attention_head(self.backbone._blocks[-1]._block_args.output_filters, num_classes)

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

    def feature_modules(self) -> list[nn.Module]:
        """The stem and blocks 0-10."""
        b = self.backbone
        return [b._conv_stem, b._bn0, *b._blocks[:SPLIT]]

    def attention_trunk(self, g: torch.Tensor) -> torch.Tensor:
        for block in self.att_layer:
            g = block(g)
        return g

    def perceive(self, g: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        x = self.weigh(g, att)
        for block in self.backbone._blocks[SPLIT:]:
            x = block(x)
        b = self.backbone
        x = b.head_act(b._bn1(b._conv_head(x)))
        return b._fc(b._dropout(torch.flatten(b._avg_pooling(x), 1)))
