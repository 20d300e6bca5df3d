"""Attention-augmented ResNet (Bello et al., ICCV 2019): in the chosen stages, the 3x3
convolution of every residual block that does not stride is augmented with multi-head self-attention
over the positions, and the two are concatenated along channels.

Each augmented convolution's per-head softmax (B, heads, N, N) over the N = h x w positions
is the output of `layerK.B.convJ.softmax`: the attention of a query position, per head, is
its row on the key grid (the attention methods).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .arch import architecture
from .resnet import ResNet, resnet_defaults


def aa_defaults(size: int) -> dict:
    """ResNet-20 augmented in its last stage (7 x 7 positions at 28 px: attention over the
    14 x 14 of stage 2 would cost four times the rest of the network), ResNet-50 in stages 3
    and 4 at 224 px; 4 heads, key and value depths a quarter of the output channels each,
    relative position logits."""
    return {**resnet_defaults(size), "image_size": size,
            "aa_stages": (3,) if size <= 64 else (3, 4), "heads": 4,
            "key_ratio": 0.25, "value_ratio": 0.25, "relative": True}


class AugmentedConv(nn.Module):
    """concat(conv3x3(x) to `out - dv` channels, MHSA(x) to `dv` channels). Attention: one
    1x1 convolution gives queries and keys of depth `dk` and values of depth `dv`, split
    into `heads`; content logits q.k / sqrt(dk / heads), plus (with `relative`) relative
    position logits q.r_h(dy) + q.r_w(dx) from learned tables covering grids up to
    `extent` x `extent`; then softmax, the weighted values and a 1x1 output projection."""

    def __init__(self, channels_in: int, channels_out: int, dk: int, dv: int, heads: int,
                 extent: int, relative: bool = True):
        super().__init__()
        if dk % heads or dv % heads or not 0 < dv < channels_out:
            raise ValueError(f"dk {dk} and dv {dv} must be multiples of heads {heads}, "
                             f"0 < dv < {channels_out}")
        self.dk, self.dv, self.heads, self.extent = dk, dv, heads, extent
        self.conv = nn.Conv2d(channels_in, channels_out - dv, 3, padding=1, bias=False)
        self.qkv = nn.Conv2d(channels_in, 2 * dk + dv, 1, bias=False)
        self.softmax = nn.Softmax(dim=-1)
        self.attn_out = nn.Conv2d(dv, dv, 1, bias=False)
        depth = dk // heads
        self.rel_h = nn.Parameter(torch.randn(2 * extent - 1, depth) * depth ** -0.5) if relative else None
        self.rel_w = nn.Parameter(torch.randn(2 * extent - 1, depth) * depth ** -0.5) if relative else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.qkv(x).split([self.dk, self.dk, self.dv], 1)
        q = q.reshape(b, self.heads, -1, h * w) * (self.dk // self.heads) ** -0.5
        logits = q.transpose(-2, -1) @ k.reshape(b, self.heads, -1, h * w)  # (B, heads, N, N)
        if self.rel_h is not None:
            self.add_relative_logits_(logits, q, h, w)
        a = self.softmax(logits)
        out = a @ v.reshape(b, self.heads, -1, h * w).transpose(-2, -1)      # (B, heads, N, dv/h)
        out = self.attn_out(out.transpose(-2, -1).reshape(b, self.dv, h, w))
        return torch.cat([self.conv(x), out], 1)

    def add_relative_logits_(self, logits: torch.Tensor, q: torch.Tensor, h: int, w: int) -> None:
        """logits[(i, j), (k, l)] += q_ij . r_h[k - i] + q_ij . r_w[l - j], in place (two
        broadcast adds, no (B, heads, N, N) temporary)."""
        if max(h, w) > self.extent:
            raise ValueError(f"a {h}x{w} grid exceeds the relative position tables "
                             f"({self.extent}x{self.extent}); build with a larger image_size")
        b = q.shape[0]
        qg = q.transpose(-2, -1).reshape(b, self.heads, h, w, -1)
        off = self.extent - 1
        dy = torch.arange(h, device=q.device)[None, :] - torch.arange(h, device=q.device)[:, None]
        dx = torch.arange(w, device=q.device)[None, :] - torch.arange(w, device=q.device)[:, None]
        lh = torch.einsum("bnijd,ikd->bnijk", qg, self.rel_h[dy + off])
        lw = torch.einsum("bnijd,jld->bnijl", qg, self.rel_w[dx + off])
        grid = logits.view(b, self.heads, h, w, h, w)
        grid.add_(lh[..., :, None]).add_(lw[..., None, :])


def grid_side(size: int, stem: str, stage: int) -> int:
    """The side of stage `stage`'s feature grid for a `size` px input (each stride-2 step
    with padding rounds up)."""
    side = size
    for _ in range((2 if stem == "imagenet" else 0) + stage - 1):
        side = math.ceil(side / 2)
    return side


def depth(ratio: float, channels: int, heads: int) -> int:
    return max(heads, round(ratio * channels / heads) * heads)


@architecture("aa_resnet", aa_defaults,
              "Attention-augmented ResNet (Bello et al. 2019), relative position logits",
              attention="layer*.conv*.softmax")
class AAResNet(ResNet):
    """A ResNet whose blocks in `aa_stages` (1-based) have an AugmentedConv in place of
    their 3x3 convolution (`conv1` of a basic block, `conv2` of a bottleneck) where it does
    not stride (the first block of a later stage keeps its strided convolution)."""

    def __init__(self, depths: tuple[int, ...] = (3, 3, 3), widths: tuple[int, ...] = (16, 32, 64),
                 block: str = "basic", num_classes: int = 10, in_channels: int = 3,
                 stem: str = "small", image_size: int = 28, aa_stages: tuple[int, ...] = (3,),
                 heads: int = 4, key_ratio: float = 0.25, value_ratio: float = 0.25,
                 relative: bool = True):
        super().__init__(depths, widths, block, num_classes, in_channels, stem)
        conv = "conv1" if block == "basic" else "conv2"
        augmented = 0
        for k in aa_stages:
            extent = grid_side(image_size, stem, k)
            for unit in self.stage(k):
                old = getattr(unit, conv)
                if old.stride != (1, 1):
                    continue
                setattr(unit, conv, AugmentedConv(
                    old.in_channels, old.out_channels, depth(key_ratio, old.out_channels, heads),
                    depth(value_ratio, old.out_channels, heads), heads, extent, relative))
                augmented += 1
        if not augmented:
            raise ValueError(f"aa_stages {tuple(aa_stages)} have no block without a stride to "
                             "augment; give those stages more blocks")
        self._init()
