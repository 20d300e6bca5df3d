"""Attention Branch Network (Fukui et al., CVPR 2019) on ResNet backbones.

Layer names follow the official code (`att_layerN`, `bn_att`, `att_conv`, `bn_att2`,
`att_conv2`, `att_conv3` 3x3, `bn_att3`) so official checkpoints load unchanged. The map
M(x) is the output of the parameter-free module `att_map`, where extractor hooks read it.
The head is explain.models.abn_head's, shared with every ABN.
"""
from __future__ import annotations

import torch
from torch import nn

from .abn_head import ABN_MAPS, ABNHead, ABNOutput
from .arch import architecture
from .resnet import ResNet, make_stage, resnet_defaults

__all__ = ["ABNOutput", "ABNResNet"]


@architecture("abn_resnet", resnet_defaults,
              "Attention Branch Network on ResNet (Fukui et al. 2019)",
              native={"abn": ABN_MAPS}, rescore="abn", feature_split=True,
              loss="abn")
class ABNResNet(ABNHead, ResNet):
    """ResNet cut after its second-to-last stage, with an attention branch in between.

    forward(x, att=None) returns the perception logits; pass `att` (B, 1, h, w) to re-score
    with an edited map M' in place of M(x) (Mitsuhara et al.). `residual=False` replaces the
    paper's g' = (1 + M) * g by g' = M * g, so that a region whose attention is removed no
    longer reaches the perception branch (see docs/editing.md).
    """

    def __init__(self, depths: tuple[int, ...] = (3, 3, 3), widths: tuple[int, ...] = (16, 32, 64),
                 block: str = "basic", num_classes: int = 10, in_channels: int = 3,
                 stem: str = "small", dropout: float = 0.0, residual: bool = True):
        super().__init__(depths, widths, block, num_classes, in_channels, stem)
        self.residual = residual
        n = self.num_stages
        trunk = make_stage(self.block, self.stage_inplanes[-1], widths[-1], depths[-1], stride=1)
        # Official names live at the top level: register the branch's parts directly.
        setattr(self, f"att_layer{n}", trunk)
        self.add_attention_head(widths[-1] * self.block.expansion, num_classes, dropout)
        self.fc_dropout = nn.Dropout(dropout)
        self._init()

    @property
    def att_trunk(self) -> nn.Sequential:
        return getattr(self, f"att_layer{self.num_stages}")

    def attention_trunk(self, g: torch.Tensor) -> torch.Tensor:
        return self.att_trunk(g)

    def feature_modules(self) -> list[nn.Module]:
        """The stem and every stage but the last."""
        return [self.conv1, self.bn1] + [self.stage(i) for i in range(1, self.num_stages)]

    def perceive(self, g: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        x = self.stage(self.num_stages)(self.weigh(g, att))
        return self.fc(self.fc_dropout(torch.flatten(self.avgpool(x), 1)))
