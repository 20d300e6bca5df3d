"""What an architecture supports beyond classifying, declared where it is registered (the
`@architecture(...)` line of its model file) and read by everything that needs to know:
the native-map methods, the renderer, the editor, fine-tuning and training. Nothing asks a
network object what it can do by looking for attributes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

from torch import nn

Kind = Literal["spatial", "vector"]


@dataclass(frozen=True)
class NativeMaps:
    """Where a native map is read: every module whose path matches `pattern` (fnmatch)
    gives one map, in forward order. `kind` "spatial": the module's output is a map
    (B, k, h, w); "vector": a per-channel vector (B, C), drawn as a bar chart.
    `channel_mean`: the map is the output's mean over channels (RAN's soft masks).
    `caption`: one line of what the map means, printed under it in pictures."""
    pattern: str
    kind: Kind = "spatial"
    channel_mean: bool = False
    caption: str = ""


@dataclass(frozen=True)
class Capabilities:
    """native:        method name -> where its maps are read
    rescore:       the native map that `forward(x, att=M')` re-scores with (None: cannot);
                   such a network also answers `forward(x, outputs="all")` with the
                   attention logits and M(x) (an ABN's two branches, see models/abn_head.py)
    feature_split: `feature_modules()` lists the feature extractor g(x), the part kept
                   frozen when fine-tuning on edited maps
    loss:          its training loss, a key of explain.losses.LOSSES
    attention:     where it computes softmax attention: every module whose path matches
                   this pattern outputs weights (B, heads, Tq, Tk) (a parameter-free
                   nn.Softmax names them); read by the attention methods (explain.attention).
                   Without it, every nn.MultiheadAttention of a network is read
    pretrained:    built on weights a package installs: `load_pretrained()` puts them in
                   place and `pretrained_state()` lists them, so that a checkpoint stores
                   only what differs from them (explain.checkpoint)"""
    native: dict[str, NativeMaps] = field(default_factory=dict)
    rescore: str | None = None
    feature_split: bool = False
    loss: str = "ce"
    attention: str | None = None
    pretrained: bool = False

    @property
    def editable(self) -> bool:
        """Maps a person edits can be fed back: re-scoring and a frozen-feature split."""
        return self.rescore is not None and self.feature_split

    def native_layers(self, net: nn.Module) -> dict[str, list[str]]:
        """method -> the module paths of `net` that give its maps, shallow to deep."""
        names = [n for n, _ in net.named_modules()]
        return {m: [n for n in names if fnmatchcase(n, spec.pattern)]
                for m, spec in self.native.items()}


PLAIN = Capabilities()
