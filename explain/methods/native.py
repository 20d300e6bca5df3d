"""Native attention maps: read by a forward hook in one forward pass, no backward.

The module each method reads comes from the model's registry entry (`Model.native`), e.g.
ABN's `att_map` (the sigmoid producing M(x)). Multi-channel masks are averaged over channels.
"""
from __future__ import annotations

import torch

from ..errors import ExplainError
from .core import Method


class NativeMap(Method):
    uses_gradients = False

    def resolve_layer(self, x: torch.Tensor) -> str:
        if self.layer is None:
            if self.name not in self.model.native:
                have = ", ".join(sorted(self.model.native)) or "none"
                raise ExplainError(f"--methods: model {self.model.name!r} has no native "
                                   f"{self.name!r} map (native maps: {have}); use a CAM-family "
                                   "method such as gradcam")
            self.layer = self.model.native[self.name]
        return self.layer

    def compute(self, x, acts, logits, targets):
        return acts.float()


class ABNMap(NativeMap):
    """Attention Branch Network's M(x): class-agnostic, (B, 1, h, w)."""
    name = "abn"
