"""Tokens as a grid: the one place that turns a transformer's tokens (B, T, C), a channels-last
stage output (B, h, w, C) (Swin) or an attention row over T keys into maps on the patch grid,
so that no user writes a reshape function.

A token sequence is `prefix` leading tokens (CLS, DeiT's distillation token, registers) and
then an h x w grid of patches in row-major order. The grid is inferred from the token count
and the input's aspect ratio: the fewest leading tokens whose remainder factors into a grid
of that aspect, to within one patch either way (ViT-B/16 at 224 px: 197 = 1 + 14 x 14).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import ExplainError

MAX_PREFIX = 8  # CLS, distillation and register tokens before the patches


@dataclass(frozen=True)
class Grid:
    """`prefix` leading tokens, then an h x w patch grid (row-major)."""
    prefix: int
    h: int
    w: int

    @property
    def tokens(self) -> int:
        return self.prefix + self.h * self.w

    def index(self, x: float, y: float, input_hw: tuple[int, int]) -> int:
        """The token of the patch that holds input pixel (x, y)."""
        row = min(self.h - 1, max(0, int(y * self.h / input_hw[0])))
        col = min(self.w - 1, max(0, int(x * self.w / input_hw[1])))
        return self.prefix + row * self.w + col

    def centre(self, index: int, input_hw: tuple[int, int]) -> tuple[float, float]:
        """Input pixel (x, y) at the centre of token `index`'s patch."""
        row, col = divmod(index - self.prefix, self.w)
        return ((col + 0.5) * input_hw[1] / self.w, (row + 0.5) * input_hw[0] / self.h)

    def maps(self, rows: torch.Tensor) -> torch.Tensor:
        """(..., T) values per token -> (..., h, w), the leading tokens dropped."""
        return rows[..., self.prefix:].reshape(*rows.shape[:-1], self.h, self.w)


def _factor(n: int, input_hw: tuple[int, int]) -> tuple[int, int] | None:
    """(h, w) with h * w = n whose sides are within one patch of the input's aspect."""
    height, width = input_hw
    for h in range(1, n + 1):
        w, rest = divmod(n, h)
        if not rest and abs(h - w * height / width) < 1 and abs(w - h * width / height) < 1:
            return h, w
    return None


def token_grid(tokens: int, input_hw: tuple[int, int], what: str = "the layer") -> Grid:
    """The grid of `tokens` tokens for an input of (H, W) pixels; ExplainError if no number
    of leading tokens (up to MAX_PREFIX) leaves a grid of the input's aspect."""
    for prefix in range(min(MAX_PREFIX, tokens - 1) + 1):
        hw = _factor(tokens - prefix, input_hw)
        if hw is not None:
            return Grid(prefix, *hw)
    raise ExplainError(f"{what} has {tokens} tokens, which are not a patch grid of the "
                       f"{input_hw[1]}x{input_hw[0]} input's aspect after up to {MAX_PREFIX} "
                       "leading (CLS) tokens; name a layer whose tokens are patches",
                       param="layer")


def channel_axis(acts: torch.Tensor, input_hw: tuple[int, int]) -> int:
    """Where the channels of a layer's output are: 1 for (B, C, h, w); -1 for tokens
    (B, T, C) and for channels-last grids (B, h, w, C) (Swin's stages), told apart from
    (B, C, h, w) by which pair of axes has the input's aspect."""
    if acts.ndim == 3:
        return -1
    if acts.ndim == 4 and not _aspect_fits(acts.shape[2:4], input_hw) \
            and _aspect_fits(acts.shape[1:3], input_hw):
        return -1
    return 1


def _aspect_fits(hw: tuple[int, int] | torch.Size, input_hw: tuple[int, int]) -> bool:
    return _factor(hw[0] * hw[1], input_hw) == (hw[0], hw[1])


def as_grid(acts: torch.Tensor, input_hw: tuple[int, int], batch: int,
            what: str = "the layer") -> torch.Tensor:
    """A layer's output as a map (B, C, h, w): NCHW as it is, channels-last grids permuted,
    tokens (B, T, C) (or sequence-first (T, B, C)) with their leading tokens dropped and
    the patches laid out on their grid."""
    if acts.ndim == 4:
        return acts.permute(0, 3, 1, 2) if channel_axis(acts, input_hw) == -1 else acts
    if acts.ndim != 3:
        raise ExplainError(f"{what} gives a {acts.ndim}-D output {tuple(acts.shape)}; a map "
                           "needs (B, C, h, w), tokens (B, T, C) or a channels-last grid",
                           param="layer")
    if acts.shape[0] != batch and acts.shape[1] == batch:  # sequence-first (T, B, C)
        acts = acts.transpose(0, 1)
    grid = token_grid(acts.shape[1], input_hw, what)
    return grid.maps(acts.transpose(1, 2))
