"""Maps from the softmax attention a network computes (explain.attention reads it): raw
attention, attention rollout and gradient-weighted attention, for any network with attention
layers (ViTs, the Non-local and attention-augmented ResNets, a user's nn.MultiheadAttention
model), through the same call as every other method.

Every map is a row of an attention-like matrix over the tokens, laid out on the key grid
(explain.tokens): the query token's row. The query is the CLS token where the tokens start
with one, else the position at the image centre; the option `query` = (x, y) in input pixels
(or one pair per image, (B, 2)) picks the patch or position holding that pixel. A position
query is returned in `extras["query"]` (B, 2), input pixels, for the renderer to mark.

`layer` names one attention layer (default: the deepest): the raw map's layer, and the
last layer that rollout and gradient-weighted attention multiply up to (over the layers
with its token count).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch

from ..attention import AttentionCapture, attention_layers, no_attention_reason
from ..errors import ExplainError
from ..explanation import Explanation, map_of
from ..model import Model
from ..tokens import Grid, token_grid
from .core import Method, Targets, register
from .native import short_labels


def head_mean(a: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, T) -> (B, T, T). Not a.mean(1): torch 2.x's CPU mean over a middle
    dimension is ~3x slower than a sum (0.95 vs 0.30 ms on the tiny ViT's batch of 256),
    and rollout is mostly this reduction."""
    return a.sum(1).div_(a.shape[1])


FUSIONS = {"mean": head_mean, "max": lambda a: a.amax(1), "min": lambda a: a.amin(1)}


def discard_lowest(a: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero the lowest `ratio` of each image's weights (B, T, T) (ties at the threshold too)."""
    k = int(ratio * a[0].numel())
    if k == 0:
        return a
    threshold = a.flatten(1).kthvalue(k, dim=1).values.view(-1, 1, 1)
    return torch.where(a <= threshold, torch.zeros_like(a), a)


def _start(eye: torch.Tensor, batch: int, rows: torch.Tensor | None) -> torch.Tensor:
    """The identity (B, T, T), or its `rows` (B,) as (B, 1, T): products of attention
    matrices are then taken from the query row leftwards, a T-th of the full cost."""
    return eye.expand(batch, -1, -1) if rows is None else eye[rows][:, None]


def rollout(attentions: list[torch.Tensor], fusion: str = "mean", discard: float = 0.0,
            rows: torch.Tensor | None = None) -> torch.Tensor:
    """Abnar & Zuidema 2020: per layer, fuse the heads of A (B, heads, T, T) (already
    fused where heads is 1: AttentionCapture's `fuse`), drop the
    lowest `discard` of its weights, add the residual (0.5 A + 0.5 I) and renormalise the
    rows; R = A_L ... A_1 (B, T, T), or with `rows` (B,) only those rows of R (B, 1, T)."""
    eye = torch.eye(attentions[0].shape[-1], device=attentions[0].device)
    r = _start(eye, attentions[0].shape[0], rows)
    for a in reversed(attentions):
        f = discard_lowest(a[:, 0] if a.shape[1] == 1 else FUSIONS[fusion](a), discard)
        # r @ D^-1 (0.5 F + 0.5 I), D the row sums, without building that matrix:
        # D^-1 scales r's columns
        rn = r / (0.5 * f.sum(-1) + 0.5)[:, None, :]
        r = 0.5 * (rn @ f) + 0.5 * rn
    return r


def gradient_rollout(attentions: list[torch.Tensor], grads: list[torch.Tensor],
                     rows: torch.Tensor | None = None) -> torch.Tensor:
    """Chefer et al. 2021 (the gradient x attention form): per layer
    A_bar = mean over heads of ReLU(dy/dA * A); R = (I + A_bar_L) ... (I + A_bar_1), or with
    `rows` only those rows."""
    eye = torch.eye(attentions[0].shape[-1], device=attentions[0].device)
    r = _start(eye, attentions[0].shape[0], rows)
    for a, g in zip(reversed(attentions), reversed(grads)):
        r = r + r @ head_mean((g * a).clamp_(min=0))
    return r


def trimmed(labels: list[str]) -> list[str]:
    """Labels without the leading parts all share, as long as none would then start with
    a bare number: `encoder.layers.encoder_layer_11` -> `encoder_layer_11`; `blocks.5`
    stays."""
    parts = [label.split(".") for label in labels]
    while len(parts) > 1 and all(len(p) > 1 for p in parts) and len({p[0] for p in parts}) == 1 \
            and not any(p[1].isdigit() for p in parts):
        parts = [p[1:] for p in parts]
    return [".".join(p) for p in parts]


class AttentionMethod(Method):
    """Base of the attention methods: hooks every attention layer (one pass), resolves the
    layer and the query."""
    family = "attention"
    uses_gradients = False

    def __init__(self, model, layer=None, **options):
        super().__init__(model, layer, **options)
        self._capture: AttentionCapture | None = None
        self._query: torch.Tensor | None = None

    @classmethod
    def unavailable(cls, model: Model) -> str | None:
        return None if attention_layers(model) else no_attention_reason(model)

    @classmethod
    def own_layers(cls, model: Model) -> list[str]:
        return attention_layers(model)

    def layers(self) -> list[str]:
        own = attention_layers(self.model)
        if not own:
            raise ExplainError(no_attention_reason(self.model), param="method")
        return own

    def resolve_layer(self, x: torch.Tensor) -> str:
        own = self.layers()
        if self.layer is None:
            self.layer = own[-1]
        elif self.layer not in own:
            raise ExplainError(f"{self.layer!r} is not an attention layer of model "
                               f"{self.model.name!r}; its attention layers: {', '.join(own)}",
                               param="layer")
        return self.layer

    def _hook(self, layer: str) -> None:
        if self._hooked is None:  # once per session: every attention layer
            assert self._hooks is not None
            self._capture = AttentionCapture(self.net, self.layers(), self._hooks,
                                             grad=self.uses_gradients, fuse=self.fuse())
        self._hooked = layer

    def fuse(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """How the capture fuses each layer's heads, where the method needs no more."""
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self._capture is not None
        self._capture.reset()
        logits = self.net(x)
        self._weights = self._capture.weights
        self._acts = self._weights.get(self.layer)
        return logits

    def up_to_layer(self) -> list[str]:
        """The layers rollout multiplies: those run up to and including the chosen one over
        the same tokens (a Non-local ResNet's blocks at other resolutions are left out)."""
        names = list(self._weights)
        shape = self._weights[self.layer].shape[-2:]
        return [n for n in names[:names.index(self.layer) + 1]
                if self._weights[n].shape[-2:] == shape]

    def grid(self, tokens: int, x: torch.Tensor) -> Grid:
        return token_grid(tokens, tuple(x.shape[-2:]), f"attention layer {self.layer!r}")

    def query_tokens(self, grid: Grid, x: torch.Tensor) -> torch.Tensor:
        """(B,) the query token of each image; sets the position queries' `extras`."""
        b, (h, w) = x.shape[0], x.shape[-2:]
        q = self.options.get("query")
        self._query = None
        if q is None and grid.prefix:
            return torch.zeros(b, dtype=torch.long, device=x.device)  # CLS
        if q is None:
            q = (w / 2, h / 2)
        q = torch.as_tensor(q, dtype=torch.float32).reshape(-1, 2).expand(b, 2)
        outside = [(px, py) for px, py in q.tolist() if not (0 <= px < w and 0 <= py < h)]
        if outside:
            raise ExplainError(f"({outside[0][0]:g}, {outside[0][1]:g}) is outside the "
                               f"{w}x{h} input", param="query")
        self._query = q.to(x.device)
        return torch.tensor([grid.index(px, py, (h, w)) for px, py in q.tolist()],
                            device=x.device)

    def on_grid(self, row: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One row per image (B, T) on the key grid, (B, 1, h, w)."""
        return self.grid(row.shape[-1], x).maps(row)[:, None]

    def rolled_layers(self, x: torch.Tensor) -> tuple[list[str], torch.Tensor]:
        """The layers rollout multiplies and each image's query token."""
        names = self.up_to_layer()
        return names, self.query_tokens(self.grid(self._weights[names[-1]].shape[-2], x), x)

    def extras(self) -> dict[str, torch.Tensor]:
        return {} if self._query is None else {"query": self._query}


@register
class RawAttention(AttentionMethod):
    """The query's row of one layer's attention, per head: raw (B, heads, h, w), the map
    their mean. `all_maps`: every layer's map, the chosen layer's heads, and the mean
    attention each position receives there (`-received`); only the layer's when named."""
    name = "attention"
    aliases = ("raw_attention",)

    def compute(self, x, acts, logits, targets):
        idx = self.query_tokens(self.grid(acts.shape[-2], x), x)
        return self.grid(acts.shape[-1], x).maps(acts[torch.arange(len(idx)), :, idx])

    def all_maps(self, x: torch.Tensor, targets: Targets = None) -> dict[str, Explanation]:
        chosen = self(x, targets)
        layers = [self.layer] if self.layer_given else list(self._weights)
        labels = dict(zip(layers, trimmed(short_labels(layers))))
        size = tuple(x.shape[-2:])

        def entry(raw: torch.Tensor, layer: str) -> Explanation:
            return replace(chosen, raw=raw, maps=map_of(raw, size), layer=layer)
        out = {}
        for layer in layers:
            raw = chosen.raw if layer == self.layer else \
                self.compute(x, self._weights[layer], chosen.logits, chosen.targets)
            out[self.key(labels[layer])] = entry(raw, layer)
        label = labels[self.layer]
        if chosen.raw.shape[1] > 1:
            for h in range(chosen.raw.shape[1]):
                out[self.key(label, f"head{h}")] = entry(chosen.raw[:, h:h + 1], self.layer)
        a = self._weights[self.layer]
        received = self.grid(a.shape[-1], x).maps(a.mean(2)).mean(1, keepdim=True)
        out[self.key(label, "received")] = entry(received, self.layer)
        return out

    def key(self, label: str, part: str = "") -> str:
        label = "-".join(p for p in (label, part) if p)
        return f"{self.name}@{label}" if label else self.name


@register
class Rollout(AttentionMethod):
    """Attention rollout (Abnar & Zuidema 2020) up to the chosen layer; options
    `head_fusion` mean (default), max or min, and `discard_ratio` (default 0)."""
    name = "rollout"
    aliases = ("attention_rollout",)

    def fuse(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Only the fused heads are needed: fused as each layer runs, the per-head weights
        are never all held at once, and the rollout reads a heads-th of them."""
        fusion = self.options.get("head_fusion", "mean")
        if fusion not in FUSIONS:
            raise ExplainError(f"{fusion!r}: choose mean, max or min", param="head_fusion")
        return FUSIONS[fusion]

    def compute(self, x, acts, logits, targets):
        discard = float(self.options.get("discard_ratio", 0.0))
        if not 0.0 <= discard < 1.0:
            raise ExplainError(f"{discard:g}: must be in [0, 1)", param="discard_ratio")
        names, idx = self.rolled_layers(x)
        r = rollout([self._weights[n] for n in names], discard=discard, rows=idx)
        return self.on_grid(r[:, 0], x)


@register
class GradAttention(AttentionMethod):
    """Gradient-weighted attention (Chefer et al. 2021, gradient x attention): one backward
    from the target score to the attention weights of every layer, and no further."""
    name = "grad_attention"
    aliases = ("gradient_attention", "chefer")
    uses_gradients = True

    def compute(self, x, acts, logits, targets):
        assert self._capture is not None
        grads = self._capture.gradients(logits.gather(1, targets[:, None]).sum())
        names, idx = self.rolled_layers(x)
        r = gradient_rollout([self._weights[n] for n in names], [grads[n] for n in names], idx)
        return self.on_grid(r[:, 0], x)
