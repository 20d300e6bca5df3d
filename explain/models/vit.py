"""A small Vision Transformer (Dosovitskiy et al. 2021): a CLS token and a grid of patch
tokens, pre-norm blocks of multi-head self-attention and an MLP, the class read from the
CLS token.

Each block's attention A = softmax(Q K^T / sqrt(d)) (B, heads, T, T) is the output of the
module `blocks.N.attn.softmax` (a parameter-free nn.Softmax), which the architecture
declares for the attention methods (raw attention, rollout, gradient-weighted attention).
"""
from __future__ import annotations

import torch
from torch import nn

from .arch import architecture


def vit_defaults(size: int) -> dict:
    """28-64 px: patch 4 (Fashion-MNIST: a 7 x 7 grid), width 64, 6 blocks of 4 heads;
    224 px: ViT-Tiny/16 (width 192, 12 blocks of 3 heads)."""
    if size <= 64:
        return {"image_size": size, "patch": 4, "dim": 64, "depth": 6, "heads": 4, "mlp_ratio": 2}
    return {"image_size": size, "patch": 16, "dim": 192, "depth": 12, "heads": 3, "mlp_ratio": 4}


class Attention(nn.Module):
    """Multi-head self-attention whose softmax weights are the output of `softmax`."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.softmax = nn.Softmax(dim=-1)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = self.softmax(q @ k.transpose(-2, -1) * self.scale)  # (B, heads, T, T)
        return self.proj((a @ v).transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(),
                                 nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@architecture("vit", vit_defaults, "Vision Transformer (Dosovitskiy et al. 2021), CLS token",
              attention="blocks.*.attn.softmax")
class ViT(nn.Module):
    def __init__(self, image_size: int = 28, patch: int = 4, dim: int = 64, depth: int = 6,
                 heads: int = 4, mlp_ratio: int = 2, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch}")
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @property
    def cam_layer(self) -> str:
        """Grad-CAM on tokens reads the last block's input norm: after the last block only
        the CLS token reaches the classifier, so the patch tokens there have no gradient."""
        return f"blocks.{len(self.blocks) - 1}.norm1"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])
