"""Attention Branch Network (Fukui et al., CVPR 2019) on ResNet backbones.

Layer names follow the official code (`att_layerN`, `bn_att`, `att_conv`, `bn_att2`,
`att_conv2`, `att_conv3` 3x3, `bn_att3`) so official checkpoints load unchanged. The map
M(x) is the output of the parameter-free module `att_map`, where extractor hooks read it.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .resnet import ResNet, make_stage


class ABNOutput(NamedTuple):
    logits: torch.Tensor      # perception branch (the prediction)
    att_logits: torch.Tensor  # attention branch classifier
    att_map: torch.Tensor     # M(x), (B, 1, h, w) in [0, 1]


class ABNResNet(ResNet):
    """ResNet cut after its second-to-last stage, with an attention branch in between.

    forward(x, att=None) returns the perception logits; pass `att` (B, 1, h, w) to re-score
    with an edited map M' in place of M(x) (Mitsuhara et al.). `residual=False` replaces the
    paper's g' = (1 + M) * g by g' = M * g, so that a region whose attention is removed no
    longer reaches the perception branch (see notes/issue-6.md).
    """

    def __init__(self, depths: tuple[int, ...] = (3, 3, 3), widths: tuple[int, ...] = (16, 32, 64),
                 block: str = "basic", num_classes: int = 10, in_channels: int = 3,
                 stem: str = "small", dropout: float = 0.0, residual: bool = True):
        super().__init__(depths, widths, block, num_classes, in_channels, stem)
        self.residual = residual
        n = self.num_stages
        trunk = make_stage(self.block, self.stage_inplanes[-1], widths[-1], depths[-1], stride=1)
        channels = widths[-1] * self.block.expansion
        # Official names live at the top level: register the branch's parts directly.
        setattr(self, f"att_layer{n}", trunk)
        self.bn_att = nn.BatchNorm2d(channels)
        self.att_conv = nn.Conv2d(channels, num_classes, 1, bias=False)
        self.bn_att2 = nn.BatchNorm2d(num_classes)
        self.att_conv2 = nn.Conv2d(num_classes, num_classes, 1, bias=False)
        self.att_conv3 = nn.Conv2d(num_classes, 1, 3, padding=1, bias=False)
        self.bn_att3 = nn.BatchNorm2d(1)
        self.att_map = nn.Sigmoid()
        self.att_dropout = nn.Dropout(dropout)
        self.fc_dropout = nn.Dropout(dropout)
        self._init()

    @property
    def att_trunk(self) -> nn.Sequential:
        return getattr(self, f"att_layer{self.num_stages}")

    def attention(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention branch on features g(x): (attention logits, M(x))."""
        a = self.bn_att(self.att_trunk(g))
        a = self.relu(self.bn_att2(self.att_conv(a)))
        att = self.att_map(self.bn_att3(self.att_conv3(a)))
        att_logits = self.att_conv2(self.att_dropout(a)).mean(dim=(2, 3))
        return att_logits, att

    def perceive(self, g: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        """Perception branch on the attention-weighted features g'(x) = (1 + M) * g(x)
        (or M * g(x) without the residual)."""
        x = self.stage(self.num_stages)(g * att + g if self.residual else g * att)
        return self.fc(self.fc_dropout(torch.flatten(self.avgpool(x), 1)))

    def forward_all(self, x: torch.Tensor, att: torch.Tensor | None = None) -> ABNOutput:
        g = self.features(x)
        att_logits, m = self.attention(g)
        if att is not None:
            att = att.to(g.dtype)
            if att.shape[-2:] != m.shape[-2:]:
                att = nn.functional.interpolate(att, size=m.shape[-2:], mode="bilinear",
                                                align_corners=False)
        return ABNOutput(self.perceive(g, m if att is None else att), att_logits, m)

    def forward(self, x: torch.Tensor, att: torch.Tensor | None = None,
                outputs: str = "logits") -> torch.Tensor | ABNOutput:
        """Perception logits; `outputs="all"` returns the ABNOutput (the trainer asks for it
        through forward, so that a DDP wrapper sees the call and synchronises gradients)."""
        out = self.forward_all(x, att)
        return out if outputs == "all" else out.logits
