"""Native attention maps: read by forward hooks in one forward pass, no backward.

The modules a method reads come from the model's registry entry: `Model.native[method]` is
the default (deepest) map, `Model.native_maps(method)` lists all of them, shallow to deep
(every RAN attention module, every CBAM/SE block, every Attend-and-Rectify module). `layer`
picks one of them; `all_maps` gives every one from the same single forward pass.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Iterator

import torch
from torch import nn

from ..errors import ExplainError
from ..explanation import Explanation, normalise, upsample
from ..hooks import Hooks
from .core import Method, Targets, find_module, register


def short_labels(paths: list[str]) -> list[str]:
    """Module paths without the dotted suffix they all share: `layer1.0.cbam.SpatialGate.sigmoid`
    -> `layer1.0`. A single path gives an empty label."""
    if len(paths) == 1:
        return [""]
    parts = [p.split(".") for p in paths]
    n = 0
    while all(len(p) > n + 1 for p in parts) and len({p[-1 - n] for p in parts}) == 1:
        n += 1
    return [".".join(p[:len(p) - n]) for p in parts]


@contextlib.contextmanager
def capture(net: nn.Module, layers: list[str], store: dict[str, torch.Tensor]) -> Iterator[None]:
    """Record the detached output of each module in `layers` into `store` while active."""
    with Hooks() as hooks:
        for name in layers:
            hooks.forward(find_module(net, name),
                          lambda mod, inp, out, name=name: store.__setitem__(name, out.detach()))
        yield


class NativeMap(Method):
    uses_gradients = False

    def layers(self) -> list[str]:
        own = self.model.native_maps(self.name)
        if not own:
            have = ", ".join(sorted(self.model.native)) or "none"
            raise ExplainError(f"model {self.model.name!r} has no native "
                               f"{self.name!r} map (native maps: {have}); use a CAM-family "
                               "method such as gradcam", param="method")
        return own

    def resolve_layer(self, x: torch.Tensor) -> str:
        own = self.layers()
        if self.layer is None:
            self.layer = self.model.native.get(self.name, own[-1])
        elif self.layer not in own:
            raise ExplainError(f"model {self.model.name!r} has no {self.name} map at "
                               f"{self.layer!r}; its {self.name} maps: {', '.join(own)}",
                               param="layer")
        return self.layer

    def compute(self, x, acts, logits, targets):
        return acts.float()

    def all_maps(self, x: torch.Tensor, targets: Targets = None) -> dict[str, Explanation]:
        """Every map of this method, from one forward pass, keyed `method@label` (just
        `method` where it has one map)."""
        own = self.layers()
        store: dict[str, torch.Tensor] = {}
        with capture(self.net, own, store):
            first = self(x, targets)
        out = {}
        for layer, label in zip(own, short_labels(own)):
            raw = self.compute(x, store[layer], first.logits, first.targets).detach()
            maps = normalise(upsample(raw.mean(1, keepdim=True), tuple(x.shape[-2:])))
            out[f"{self.name}@{label}" if label else self.name] = replace(
                first, maps=maps, raw=raw, layer=layer)
        return out


@register
class ABNMap(NativeMap):
    """Attention Branch Network's M(x): class-agnostic, (B, 1, h, w)."""
    name = "abn"


@register
class RANMap(NativeMap):
    """Residual Attention Network: each attention module's soft mask M (B, C, h, w), shown as
    its channel mean (B, 1, h, w)."""
    name = "ran"

    def compute(self, x, acts, logits, targets):
        return acts.float().mean(1, keepdim=True)


@register
class CBAMMap(NativeMap):
    """CBAM's spatial attention M_s of a block, (B, 1, h, w)."""
    name = "cbam"


@register
class AttendRectifyMap(NativeMap):
    """Attend and Rectify: a module's attention heads weighted by their confidence gates,
    g_k H_k (B, K, h, w); the map is their sum over heads."""
    name = "attend_rectify"
    aliases = ("attend-and-rectify",)


@register
class SEMap(NativeMap):
    """Squeeze-and-excitation vectors s (B, C) of a block: no spatial map (`maps` is zero),
    `raw` is the vector, rendered as a bar chart."""
    name = "se"

    def compute(self, x, acts, logits, targets):
        return acts.float()[:, :, None, None]

    @staticmethod
    def _vector(e: Explanation) -> Explanation:
        return replace(e, raw=e.raw.flatten(1), maps=torch.zeros_like(e.maps))

    def __call__(self, x: torch.Tensor, targets: Targets = None) -> Explanation:
        return self._vector(super().__call__(x, targets))

    def all_maps(self, x, targets=None):
        return {k: self._vector(e) for k, e in super().all_maps(x, targets).items()}


@register
class BayesABNMap(NativeMap):
    """Bayesian ABN: the mean of M(x) over T Monte-Carlo dropout passes (option `samples`);
    extras: `std` (B, 1, h, w), the uncertainty map, and each branch's predictive entropy
    `entropy_attention`, `entropy_perception` (B,). `logits` are the log mean probabilities of
    the more certain branch."""
    name = "bayes_abn"
    aliases = ("bayesian_abn",)
    reads_activation = False  # the T passes are run by the model's mc_forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self.net, "mc_forward"):
            raise ExplainError(f"bayes_abn needs a Bayesian ABN model, not "
                               f"{type(self.net).__name__}", param="method")
        self._mc = self.net.mc_forward(x, self.options.get("samples"))
        return self._mc.logits

    def compute(self, x, acts, logits, targets):
        return self._mc.map_mean

    def extras(self):
        mc = self._mc
        return {"std": mc.map_std, "entropy_attention": mc.entropy_attention,
                "entropy_perception": mc.entropy_perception}

    def all_maps(self, x, targets=None):
        """The mean map and the uncertainty (standard deviation) map side by side."""
        e = self(x, targets)
        std = e.extras["std"]
        return {self.name: e, f"{self.name}@std": replace(
            e, raw=std, maps=normalise(upsample(std, tuple(x.shape[-2:]))))}
