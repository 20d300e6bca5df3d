"""Native attention maps: read by forward hooks in one forward pass, no backward.

The modules a method reads come from the model's architecture, which declares them
(explain.capabilities.NativeMaps): `Model.native[method]` is the default (deepest) map,
`Model.native_maps(method)` lists all of them, shallow to deep (every RAN attention module,
every CBAM/SE block, every Attend-and-Rectify module). `layer` picks one of them; `all_maps`
gives every one from the same single forward pass.

A native method needs no code of its own: `native_method(name)` serves any map an
architecture declares, spatial or vector; only a map computed differently (Bayesian ABN's
Monte-Carlo passes) has its own class, listed in `SPECIAL`.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Iterator

import torch
from torch import nn

from ..errors import ExplainError
from ..explanation import Explanation, map_of, normalise, upsample
from ..model import Model
from ..hooks import Hooks
from .core import Method, Targets, find_module


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
    """A map the network computes itself, read at the modules its architecture declares."""
    family = "native"
    uses_gradients = False

    @classmethod
    def unavailable(cls, model: Model) -> str | None:
        if model.native_maps(cls.name):
            return None
        return (f"model {model.name!r} has no native {cls.name!r} map (native maps: "
                f"{', '.join(sorted(model.native)) or 'none'}); use a CAM-family method such "
                "as gradcam")

    @classmethod
    def own_layers(cls, model: Model) -> list[str]:
        return model.native_maps(cls.name)

    def layers(self) -> list[str]:
        reason = self.unavailable(self.model)
        if reason:
            raise ExplainError(reason, param="method")
        return self.model.native_maps(self.name)

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
        a = acts.float()
        if a.ndim == 2:  # a vector (B, C): kept as (B, C, 1, 1) until `shaped`
            return a[:, :, None, None]
        spec = self.model.caps.native.get(self.name)
        return a.mean(1, keepdim=True) if spec is not None and spec.channel_mean else a

    def shaped(self, e: Explanation) -> Explanation:
        """A vector map as declared: `raw` (B, C), `maps` zero (there is no spatial map)."""
        if self.model.native_kind(self.name) != "vector":
            return e
        return replace(e, raw=e.raw.flatten(1), maps=torch.zeros_like(e.maps), kind="vector")

    def __call__(self, x: torch.Tensor, targets: Targets = None) -> Explanation:
        return self.shaped(super().__call__(x, targets))

    def all_maps(self, x: torch.Tensor, targets: Targets = None) -> dict[str, Explanation]:
        """Every map of this method, from one forward pass, keyed `method@label` (just
        `method` where it has one map, or where a layer was named)."""
        own = [self.layer] if self.layer_given else self.layers()
        store: dict[str, torch.Tensor] = {}
        with capture(self.net, own, store):
            first = self(x, targets)
        out = {}
        for layer, label in zip(own, short_labels(own)):
            raw = self.compute(x, store[layer], first.logits, first.targets).detach()
            maps = map_of(raw, tuple(x.shape[-2:]))
            out[f"{self.name}@{label}" if label else self.name] = self.shaped(replace(
                first, maps=maps, raw=raw, layer=layer))
        return out


class BayesABNMap(NativeMap):
    """Bayesian ABN: the mean of M(x) over T Monte-Carlo dropout passes (option `samples`);
    extras: `std` (B, 1, h, w), the uncertainty map, and each branch's predictive entropy
    `entropy_attention`, `entropy_perception` (B,). `logits` are the log mean probabilities of
    the more certain branch."""
    name = "bayes_abn"
    aliases = ("bayesian_abn",)
    reads_activation = False  # the T passes are run by the model's mc_forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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


SPECIAL: dict[str, type[NativeMap]] = {BayesABNMap.name: BayesABNMap}
ALIASES = {"attend-and-rectify": "attend_rectify"}  # other spellings of declared map names


def native_method(name: str) -> type[NativeMap]:
    """The method class of the native map `name`: its own class where it has one, else a
    NativeMap that reads whatever modules the model's architecture declares for `name`."""
    if name in SPECIAL:
        return SPECIAL[name]
    aliases = tuple(a for a, n in ALIASES.items() if n == name)
    return type(f"NativeMap_{name}", (NativeMap,),
                {"name": name, "aliases": aliases, "__doc__": f"The native {name!r} map."})
