"""ABN on a pretrained backbone: EfficientNet-Lite0's ImageNet features, new attention branch.

Split as in ABN-ResNet at stride 16: the feature extractor g(x) is the stem and blocks 0-10
(112 channels at 14x14 for 224 px); the perception branch is blocks 11-15, the head
convolution and a classifier: new, or with `imagenet_classifier` the pretrained ImageNet
one (1000 classes). The attention trunk is a stride-1 copy of blocks 11-15, initialised
from their ImageNet weights; the head is explain.models.abn_head's, with the official names.

With `imagenet_classifier` (the ImageNet ABN, distilled from the network itself: explain.distil)
the attention branch mirrors the whole pretrained network at stride 1: the trunk also copies
the head convolution (`att_head`), `att_conv` is the ImageNet classifier applied at every
place (its bias in `bn_att2`), so the branch's features are the class evidence of each of
the 14x14 places -- a class activation map per class -- and M(x) starts as their mean
(`att_conv3`), normalised by `bn_att3`: where there is evidence for any class. The
perception branch is the pretrained network reading (1 + M) g; block 11 is told that g
comes in 1.5 times larger (M's mean), so that at M = 0.5 everywhere it computes the
pretrained network exactly. Its BatchNorm statistics stay ImageNet's (`train` keeps them).
The frozen perception branch is sensitive to M's spread (every 0.05 of uniform shift costs
points of agreement with the teacher), so `map_contrast`, bn_att3's scale, sets how far
M(x) strays from 0.5: a monotone change, the map's ranking (and any pointing game) is the
same at every contrast (benchmarks/photo_abn_contrast.py measures the trade).

Everything the pip-installed weights determine is `pretrained_state()`; a checkpoint of
this architecture stores only what differs from it (explain.checkpoint).
"""
from __future__ import annotations

from types import MappingProxyType

import torch
from efficientnet_lite_pytorch.model import MBConvBlock
from torch import nn

from ..finetune_config import MAP_ONLY
from ..weights import read_state_dict
from .abn_head import ABN_MAPS, ABNHead
from .arch import architecture
from .efficientnet import EfficientNetLite0, base_weights, weights_path

SPLIT = 11  # first block of the perception branch
MEAN_MAP = 0.5  # M(x)'s starting mean with the ImageNet classifier, absorbed by block 11


@architecture("abn_efficientnet_lite0", lambda size: {"image_size": size},
              "ABN on ImageNet-pretrained EfficientNet-Lite0 (224 px RGB)",
              native={"abn": ABN_MAPS}, rescore="abn", feature_split=True,
              loss="abn", pretrained=True)
class ABNEfficientNetLite0(ABNHead):
    cam_layer = "backbone.head_act"
    base_weights = staticmethod(base_weights)

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224,
                 residual: bool = True, imagenet_classifier: bool = False,
                 map_contrast: float = 1.0):
        super().__init__()
        if in_channels != 3:
            raise ValueError("abn_efficientnet_lite0 takes RGB input (in_channels=3)")
        if imagenet_classifier and num_classes != 1000:
            raise ValueError("imagenet_classifier needs num_classes=1000")
        if map_contrast != 1.0 and not imagenet_classifier:
            raise ValueError("map_contrast needs imagenet_classifier")
        self.residual = residual
        self.imagenet_classifier = imagenet_classifier
        self.map_contrast = map_contrast
        self.backbone = EfficientNetLite0(num_classes=num_classes)
        size = (image_size // 16, image_size // 16)
        params = self.backbone._global_params
        self.att_layer = nn.ModuleList(
            MBConvBlock(b._block_args._replace(stride=1), params, image_size=size)
            for b in self.backbone._blocks[SPLIT:])
        channels = self.backbone._blocks[-1]._block_args.output_filters
        self.att_head: nn.Module = nn.Identity()
        if imagenet_classifier:
            conv, bn = self.backbone._conv_head, self.backbone._bn1
            self.att_head = nn.Sequential(
                nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=False),
                nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum), nn.ReLU6())
            channels = conv.out_channels
            self.map_grad = False  # the perception loss would flatten M (explain.losses.distil_loss)
            self.finetune_defaults = MappingProxyType(MAP_ONLY)
        self.add_attention_head(channels, num_classes)

    def pretrained_state(self) -> dict[str, torch.Tensor]:
        """What the ImageNet weights determine: the backbone (its classifier only with
        `imagenet_classifier`) and the attention trunk, a copy of the blocks it mirrors; with
        `imagenet_classifier` also the rest of the construction the module docstring gives
        (head convolution, classifier at every place, M's starting weights, block 11 told
        of the 1.5 times larger g), so that a checkpoint stores only what training changed."""
        sd = read_state_dict(weights_path())
        out = {f"backbone.{k}": v for k, v in sd.items()
               if self.imagenet_classifier or not k.startswith("_fc.")}
        for i in range(len(self.att_layer)):
            prefix = f"_blocks.{SPLIT + i}."
            out.update({f"att_layer.{i}.{k[len(prefix):]}": v.clone()
                        for k, v in sd.items() if k.startswith(prefix)})
        if self.imagenet_classifier:
            out.update({f"att_head.1.{k[5:]}": v.clone() for k, v in sd.items()
                        if k.startswith("_bn1.")})
            out["att_head.0.weight"] = sd["_conv_head.weight"].clone()
            out["att_conv.weight"] = sd["_fc.weight"][:, :, None, None].clone()
            out["bn_att2.bias"] = sd["_fc.bias"].clone()
            k = self.att_conv2.in_channels
            out["att_conv2.weight"] = torch.eye(k)[:, :, None, None]
            out["att_conv3.weight"] = torch.zeros_like(self.att_conv3.weight)
            out["att_conv3.weight"][:, :, 1, 1] = 1.0 / self.att_conv3.in_channels
            out["bn_att3.weight"] = torch.full_like(self.bn_att3.weight, self.map_contrast)
            bn0 = f"backbone._blocks.{SPLIT}._bn0."  # after a bias-free 1x1 convolution
            s, eps = 1 + MEAN_MAP, self.backbone._blocks[SPLIT]._bn0.eps
            # (s c - s mean) / sqrt(v') = (c - mean) / sqrt(var + eps)
            out[bn0 + "running_mean"] = out[bn0 + "running_mean"] * s
            out[bn0 + "running_var"] = out[bn0 + "running_var"] * (s * s) + eps * (s * s - 1)
        return out

    def load_pretrained(self) -> None:
        """ImageNet weights into the backbone and the attention trunk (see pretrained_state)."""
        unexpected = self.load_state_dict(self.pretrained_state(), strict=False).unexpected_keys
        assert not unexpected, unexpected

    def map_range(self) -> tuple[float, float]:
        """With `map_contrast` M(x) stays near 0.5 (about [0.42, 0.60] on photos at 0.25),
        so an edit's 0 or 1 would lie many standard deviations outside what the map can
        be: edits span M's normalised score within +-2 (bn_att3's scale and shift)."""
        if not self.imagenet_classifier:
            return super().map_range()
        w, b = self.bn_att3.weight.detach().abs().float(), self.bn_att3.bias.detach().float()
        return float(torch.sigmoid(b - 2 * w)), float(torch.sigmoid(b + 2 * w))

    def train(self, mode: bool = True) -> "ABNEfficientNetLite0":
        """With the ImageNet classifier the BatchNorm statistics of the pretrained network
        and of its mirror in the attention branch stay as built (a few thousand photos
        would move them off); their scale and shift may train. bn_att3's, M(x)'s own
        normalisation, are learnt."""
        super().train(mode)
        if self.imagenet_classifier:
            for part in (self.backbone, self.att_layer, self.att_head, self.bn_att, self.bn_att2):
                for m in part.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.stem_and_blocks(x, upto=SPLIT)

    def feature_modules(self) -> list[nn.Module]:
        """The stem and blocks 0-10."""
        b = self.backbone
        return [b._conv_stem, b._bn0, *b._blocks[:SPLIT]]

    def attention_trunk(self, g: torch.Tensor) -> torch.Tensor:
        for block in self.att_layer:
            g = block(g)
        return self.att_head(g)

    def perceive(self, g: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        return b.classify(b.head(b.blocks_from(self.weigh(g, att), SPLIT)))
