"""The Attention Branch Network head (Fukui et al., CVPR 2019), shared by every ABN.

A host network supplies the feature extractor `features(x)` = g(x), the attention trunk
`attention_trunk(g)` and the perception branch `perceive(g, g')`; this mixin adds the head
and wires the branches:

    attention branch  a = ReLU(bn_att2(att_conv(bn_att(trunk(g)))))
                      M(x) = sigmoid(bn_att3(att_conv3(a)))      (B, 1, h, w), at `att_map`
                      attention logits = GAP(att_conv2(dropout(a)))
                                       = att_conv2(GAP(dropout(a)))  (both linear; the
                                       second costs 1/(h*w) of the first: 1000 classes
                                       at 14x14 made att_conv2 a third of the whole cost)
    perception branch g' = (1 + M) * g (the paper's residual form) or M * g, then `perceive`

The head's modules keep the official names at the network's top level (`bn_att`,
`att_conv`, `bn_att2`, `att_conv2`, `att_conv3` 3x3, `bn_att3`), so official checkpoints and
the zoo's load unchanged. `forward(x, att=M')` re-scores with an edited map in place of
M(x) (Mitsuhara et al.): the capability `rescore="abn"` that the editor and fine-tuning use.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, NamedTuple

import torch
from torch import nn

from ..capabilities import NativeMaps

# Where every ABN's map is read, and what it means (the caption pictures print under it).
ABN_MAPS = NativeMaps("att_map", caption="ABN attention map M(x): where the attention branch "
                      "sees class evidence; the features are reweighted by it, (1 + M) * g(x), "
                      "before the perception branch classifies")


class ABNOutput(NamedTuple):
    logits: torch.Tensor      # perception branch (the prediction)
    att_logits: torch.Tensor  # attention branch classifier
    att_map: torch.Tensor     # M(x), (B, 1, h, w) in [0, 1]


class ABNHead(nn.Module):
    """Mixin of every ABN. The host class provides `features(x)` = g(x),
    `feature_modules()` (the modules of g, frozen when fine-tuning on edited maps),
    `attention_trunk(g)` and `perceive(g, att)` -> perception logits (through `weigh`)."""
    residual: bool = True
    # False: in training, the perception loss does not reach M(x) (its gradient stops at
    # the map); explanations still differentiate through it
    map_grad: bool = True
    # fine-tuning settings (explain.finetune_config.FinetuneConfig fields) this ABN needs
    # where the general defaults, made for ABNs that learnt their map, do not serve
    finetune_defaults: Mapping[str, object] = MappingProxyType({})

    def add_attention_head(self, channels: int, num_classes: int, dropout: float = 0.0) -> None:
        """The head's modules on a trunk output of `channels` channels."""
        self.bn_att = nn.BatchNorm2d(channels)
        self.att_conv = nn.Conv2d(channels, num_classes, 1, bias=False)
        self.bn_att2 = nn.BatchNorm2d(num_classes)
        self.att_conv2 = nn.Conv2d(num_classes, num_classes, 1, bias=False)
        self.att_conv3 = nn.Conv2d(num_classes, 1, 3, padding=1, bias=False)
        self.bn_att3 = nn.BatchNorm2d(1)
        self.relu = nn.ReLU(inplace=True)
        self.att_map = nn.Sigmoid()
        self.att_dropout = nn.Dropout(dropout)

    def map_range(self) -> tuple[float, float]:
        """The span of M(x) that edits paint in (explain.edits.MapScale): "remove" takes a
        place to the low end, "add" to the high end. All of sigmoid's (0, 1) for an ABN
        that learnt its map."""
        return 0.0, 1.0

    def weigh(self, g: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        """g'(x) = (1 + M) * g(x), or M * g(x) without the residual."""
        return g * att + g if self.residual else g * att

    def attention(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention branch on features g(x): (attention logits, M(x))."""
        a = self.bn_att(self.attention_trunk(g))
        a = self.relu(self.bn_att2(self.att_conv(a)))
        att = self.att_map(self.bn_att3(self.att_conv3(a)))
        pooled = self.att_dropout(a).mean(dim=(2, 3), keepdim=True)
        return self.att_conv2(pooled).flatten(1), att

    def forward_all(self, x: torch.Tensor, att: torch.Tensor | None = None,
                    from_features: bool = False) -> ABNOutput:
        """Both branches; `from_features`: x is g(x) already, computed beforehand by the
        frozen feature extractor (training on precomputed views, explain.distil)."""
        g = x if from_features else self.features(x)
        att_logits, m = self.attention(g)
        if att is not None:
            att = att.to(g.dtype)
            if att.shape[-2:] != m.shape[-2:]:
                att = nn.functional.interpolate(att, size=m.shape[-2:], mode="bilinear",
                                                align_corners=False)
        if att is None:
            att = m.detach() if self.training and not self.map_grad else m
        return ABNOutput(self.perceive(g, att), att_logits, m)

    def forward(self, x: torch.Tensor, att: torch.Tensor | None = None,
                outputs: str = "logits", from_features: bool = False
                ) -> torch.Tensor | ABNOutput:
        """Perception logits; `att` re-scores with that map in place of M(x);
        `outputs="all"` returns the ABNOutput (the trainer asks for it through forward, so
        that a DDP wrapper sees the call and synchronises gradients)."""
        out = self.forward_all(x, att, from_features)
        return out if outputs == "all" else out.logits
