"""A ready model: the network with everything needed to feed it and read its answers.
Methods, pipelines and applications take a `Model`; `explain.registry` makes them."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .capabilities import PLAIN, Capabilities, Kind
from .preprocess import InputSpec


@dataclass
class Model:
    """A ready network with everything needed to feed it and read its answers."""
    name: str
    net: nn.Module
    input: InputSpec
    classes: list[str]
    native: dict[str, str] = field(default_factory=dict)  # method -> module path (default map)
    cam_layer: str | None = None
    card: dict = field(default_factory=dict)
    # method -> every module path giving one of its maps, shallow to deep (RAN stages, CBAM
    # blocks, ...); methods missing here have the single map of `native`
    native_layers: dict[str, list[str]] = field(default_factory=dict)
    caps: Capabilities = PLAIN  # what its architecture declares it supports

    def native_kind(self, method: str) -> Kind:
        """"spatial" maps, or "vector" (per-channel values, drawn as bars)."""
        spec = self.caps.native.get(method)
        return spec.kind if spec else "spatial"

    def caption(self, key: str) -> str:
        """One line of what the map `key` (`method` or `method@label`) means: its native map
        declaration's caption ("" for other methods)."""
        spec = self.caps.native.get(key.partition("@")[0])
        return spec.caption if spec else ""

    def native_maps(self, method: str) -> list[str]:
        """The module paths of `method`'s maps ([] when the model has no such native map)."""
        if method in self.native_layers:
            return list(self.native_layers[method])
        return [self.native[method]] if method in self.native else []

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> "Model":
        self.net.to(device)
        return self

    def class_name(self, index: int) -> str:
        return self.classes[index] if 0 <= index < len(self.classes) else str(index)
