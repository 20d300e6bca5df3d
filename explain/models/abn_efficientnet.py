"""ABN on a pretrained backbone: EfficientNet-Lite0's ImageNet features, new attention branch.

Split as in ABN-ResNet at stride 16: the feature extractor g(x) is the stem and blocks 0-10
(112 channels at 14x14 for 224 px); the perception branch is blocks 11-15, the head
convolution and a classifier: new, or with `imagenet_classifier` the pretrained ImageNet
one (1000 classes). The attention trunk is a stride-1 copy of blocks 11-15, initialised
from their ImageNet weights; the head is explain.models.abn_head's, with the official names.

Everything the pip-installed weights determine is `pretrained_state()`; a checkpoint of
this architecture stores only what differs from it (explain.checkpoint).
"""
from __future__ import annotations

import torch
from efficientnet_lite_pytorch.model import MBConvBlock
from torch import nn

from ..weights import read_state_dict
from .abn_head import ABN_MAPS, ABNHead
from .arch import architecture
from .efficientnet import EfficientNetLite0, base_weights, weights_path

SPLIT = 11  # first block of the perception branch


@architecture("abn_efficientnet_lite0", lambda size: {"image_size": size},
              "ABN on ImageNet-pretrained EfficientNet-Lite0 (224 px RGB)",
              native={"abn": ABN_MAPS}, rescore="abn", feature_split=True,
              loss="abn", pretrained=True)
class ABNEfficientNetLite0(ABNHead):
    cam_layer = "backbone.head_act"
    base_weights = staticmethod(base_weights)

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224,
                 residual: bool = True, imagenet_classifier: bool = False):
        super().__init__()
        if in_channels != 3:
            raise ValueError("abn_efficientnet_lite0 takes RGB input (in_channels=3)")
        if imagenet_classifier and num_classes != 1000:
            raise ValueError("imagenet_classifier needs num_classes=1000")
        self.residual = residual
        self.imagenet_classifier = imagenet_classifier
        self.backbone = EfficientNetLite0(num_classes=num_classes)
        size = (image_size // 16, image_size // 16)
        params = self.backbone._global_params
        self.att_layer = nn.ModuleList(
            MBConvBlock(b._block_args._replace(stride=1), params, image_size=size)
            for b in self.backbone._blocks[SPLIT:])
        self.add_attention_head(self.backbone._blocks[-1]._block_args.output_filters, num_classes)

    def pretrained_state(self) -> dict[str, torch.Tensor]:
        """What the ImageNet weights determine: the backbone (its classifier only with
        `imagenet_classifier`) and the attention trunk, a copy of the blocks it mirrors."""
        sd = read_state_dict(weights_path())
        out = {f"backbone.{k}": v for k, v in sd.items()
               if self.imagenet_classifier or not k.startswith("_fc.")}
        for i in range(len(self.att_layer)):
            prefix = f"_blocks.{SPLIT + i}."
            out.update({f"att_layer.{i}.{k[len(prefix):]}": v.clone()
                        for k, v in sd.items() if k.startswith(prefix)})
        return out

    def load_pretrained(self) -> None:
        """ImageNet weights into the backbone and the attention trunk (see pretrained_state).

        With the ImageNet classifier, the perception branch is the pretrained network and
        the map must not disturb it: M(x) starts near 0 (bn_att3's bias at -4: about 0.02,
        with its spatial contrast), so that (1 + M) g is about g; a map near 0.5 would turn
        60% of the network's answers. The map starts as the evidence for all classes
        (att_conv3 averages the class channels at each place), which the attention
        branch's training sharpens into each class's evidence."""
        unexpected = self.load_state_dict(self.pretrained_state(), strict=False).unexpected_keys
        assert not unexpected, unexpected
        if self.imagenet_classifier:
            nn.init.constant_(self.bn_att3.bias, -4.0)
            with torch.no_grad():
                self.att_conv3.weight.zero_()
                self.att_conv3.weight[:, :, 1, 1] = 1.0 / self.att_conv3.in_channels

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
        b = self.backbone
        return b.classify(b.head(b.blocks_from(self.weigh(g, att), SPLIT)))
