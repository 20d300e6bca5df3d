"""Attend and Rectify (Rodriguez et al., ECCV 2018) on a pre-activation Wide ResNet.

Each attention module reads features Z (B, C, h, w):
- attention heads H = softmax over positions of conv3x3(C -> K)(Z) (K maps, each sums to 1);
- output heads o_k = sum over positions of H_k * conv3x3(C -> K*N)(Z)_k, (B, K, N);
- confidence gates g = softmax_k(tanh(sum over positions of H_k * conv3x3(C -> K)(Z)_k)),
  module output o = sum_k g_k o_k.
Global gates c = tanh(BN(W GAP(Z_last))) weight the modules and the network's own classifier:
the prediction is sum_l softmax(c)_l log_softmax(o_l), a log-probability (trained with NLL).
The inter-head regulariser penalises overlapping heads of a module (see `head_overlap`).

As in the official code (prlz77/attend-and-rectify), modules read the BN-ReLU-activated input
of the last groups (`actN`) and the final BN-ReLU features (`act_out`): for 3 groups and depth
3, the inputs of groups 2 and 3 and the output. Each module's heads weighted by its gates, g_k H_k
(B, K, h, w), are the output of `attention.I.gated_heads`, where extractor hooks read them.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..capabilities import NativeMaps
from .arch import architecture
from .stem import Stem


def wrn_defaults(size: int) -> dict:
    """WRN-22-1 for small inputs (pre-activation ResNet-20-like, 16/32/64 wide); WRN-18-2 at
    ImageNet sizes."""
    if size <= 64:
        return {"depths": (3, 3, 3), "widths": (16, 32, 64), "stem": "small"}
    return {"depths": (2, 2, 2, 2), "widths": (128, 256, 512, 1024), "stem": "imagenet"}


class WideBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3 plus a shortcut: the
    input itself, or a 1x1 projection of the activated input where the shape changes (as in
    Zagoruyko's WRN). `preact=False`: the input arrives already activated (the group's
    `actN`), so that the activation attention reads is a module output of its own."""

    def __init__(self, cin: int, cout: int, stride: int = 1, preact: bool = True):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(cin) if preact else None
        self.conv0 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x if self.bn0 is None else F.relu(self.bn0(x))
        z = self.conv1(F.relu(self.bn1(self.conv0(a))))
        return z + (x if self.shortcut is None else self.shortcut(a))


def wide_group(cin: int, cout: int, n: int, stride: int, preact: bool) -> nn.Sequential:
    return nn.Sequential(*[WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1,
                                     preact or i > 0) for i in range(n)])


def bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def head_overlap(heads: torch.Tensor) -> torch.Tensor:
    """Inter-head regulariser of one module: 2x2 average-pool the heads (B, K, h, w), flatten
    to M (B, K, hw/4), mean of the squared off-diagonal entries of M M^T. Zero when the heads
    attend to disjoint regions."""
    m = F.avg_pool2d(heads, 2, 2) if min(heads.shape[-2:]) >= 2 else heads
    m = m.flatten(2)
    gram = m @ m.transpose(1, 2)
    off = 1 - torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
    return ((gram * off) ** 2).mean()


class AttendModule(nn.Module):
    """K attention heads, K output heads and K confidence gates on one feature map."""

    def __init__(self, channels: int, num_classes: int, heads: int = 4):
        super().__init__()
        self.heads, self.num_classes = heads, num_classes
        self.att = nn.Conv2d(channels, heads, 3, padding=1, bias=False)
        self.out = nn.Conv2d(channels, heads * num_classes, 3, padding=1, bias=False)
        self.score = nn.Conv2d(channels, heads, 3, padding=1, bias=False)
        self.gated_heads = nn.Identity()  # g_k H_k, (B, K, h, w): the native map

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(module output o (B, N) before log-softmax, heads H (B, K, h, w))."""
        b, _, h, w = z.shape
        att = self.att(z).flatten(2).softmax(-1)                                  # (B, K, hw)
        o = (self.out(z).view(b, self.heads, self.num_classes, h * w) * att[:, :, None]).sum(-1)
        g = torch.tanh((self.score(z).flatten(2) * att).sum(-1)).softmax(1)        # (B, K)
        heads = att.view(b, self.heads, h, w)
        self.gated_heads(g[:, :, None, None] * heads)
        return (o * g[:, :, None]).sum(1), heads


class AROutput(NamedTuple):
    logits: torch.Tensor   # sum_l softmax(c)_l log_softmax(o_l): log-probabilities (B, N)
    outputs: torch.Tensor  # o_l per module, then the classifier's, (B, AD + 1, N)
    gates: torch.Tensor    # softmax(c), (B, AD + 1)
    reg: torch.Tensor      # inter-head regulariser, weighted by reg_weight (scalar)


@architecture("attend_rectify", wrn_defaults,
              "Attend and Rectify on a Wide ResNet (Rodriguez et al. 2018)",
              native={"attend_rectify": NativeMaps(
                  "attention.*.gated_heads", caption="Attend-and-Rectify: the module's attention "
                  "heads weighted by their gates; each head looks at one part, so the map is "
                  "spotty by design")},
              loss="attend_rectify")
class AttendRectifyWRN(nn.Module):
    """Wide ResNet (groups `layer1..G` of `depths[i]` pre-activation blocks, widths `widths`)
    with `attention_depth` attend-and-rectify modules of `heads` heads each."""

    def __init__(self, depths: tuple[int, ...] = (3, 3, 3), widths: tuple[int, ...] = (16, 32, 64),
                 num_classes: int = 10, in_channels: int = 3, stem: str = "small",
                 heads: int = 4, attention_depth: int = 3, reg_weight: float = 1e-3):
        super().__init__()
        if not 1 <= attention_depth <= len(depths):
            raise ValueError(f"attention_depth must be 1..{len(depths)} (the groups' inputs "
                             "after the first, and the final features)")
        stem_width = 16 if stem == "small" else 64
        self.stem = Stem(in_channels, stem_width, stem)
        self.num_stages = len(depths)
        cin = stem_width
        for i, (d, w) in enumerate(zip(depths, widths)):
            if i:  # the first block's pre-activation, hoisted: what attention modules read
                setattr(self, f"act{i + 1}", bn_relu(cin))
            setattr(self, f"layer{i + 1}", wide_group(cin, w, d, 1 if i == 0 else 2, i == 0))
            cin = w
        self.act_out = bn_relu(cin)
        self.fc = nn.Linear(cin, num_classes)
        # Attention reads the activated inputs of the last `attention_depth - 1` groups + output.
        g = len(depths)
        self.reads_input_of = list(range(g - attention_depth + 2, g + 1))
        read_widths = [widths[i - 2] for i in self.reads_input_of] + [cin]
        self.attention = nn.ModuleList(AttendModule(c, num_classes, heads) for c in read_widths)
        self.gate = nn.Linear(cin, attention_depth + 1, bias=False)
        self.gate_bn = nn.BatchNorm1d(attention_depth + 1)
        self.reg_weight = reg_weight
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight)

    @property
    def cam_layer(self) -> str:
        return f"layer{self.num_stages}"

    def forward_parts(self, x: torch.Tensor) -> AROutput:
        x = self.stem(x)
        feats = []
        for i in range(1, self.num_stages + 1):
            if i > 1:
                x = getattr(self, f"act{i}")(x)
                if i in self.reads_input_of:
                    feats.append(x)
            x = getattr(self, f"layer{i}")(x)
        x = self.act_out(x)
        feats.append(x)
        outs, reg = [], x.new_zeros(())
        for module, z in zip(self.attention, feats):
            o, heads = module(z)
            outs.append(o)
            reg = reg + head_overlap(heads)
        pooled = x.mean(dim=(2, 3))
        outputs = torch.stack(outs + [self.fc(pooled)], dim=1)
        gates = torch.tanh(self.gate_bn(self.gate(pooled))).softmax(1)
        logits = (F.log_softmax(outputs.float(), dim=2) * gates.float()[:, :, None]).sum(1)
        return AROutput(logits, outputs, gates, reg * self.reg_weight / len(self.attention))

    def forward(self, x: torch.Tensor, outputs: str = "logits") -> torch.Tensor | AROutput:
        """Mixture log-probabilities; `outputs="all"` returns the AROutput (the trainer asks
        for it through forward, so that a DistributedDataParallel wrapper sees the call)."""
        out = self.forward_parts(x)
        return out if outputs == "all" else out.logits
