"""Bayesian ABN (Tsukahara et al., ICPR 2020): ABN with Monte-Carlo dropout in both branches.

Dropout sits before `att_conv2` (attention classifier) and before `fc` (perception
classifier), as in ABNResNet with `dropout` > 0, and also at the end of the attention
trunk, so that M(x) itself varies between passes. Dropout modules hold no parameters: an
ABN checkpoint of the same layout loads unchanged. `mc_forward` runs the feature extractor
once and the two branches T times with dropout on, and returns the mean and standard
deviation of M(x), each branch's mean prediction and predictive entropy; the branch with the
lower entropy gives the answer.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, NamedTuple

import torch
from torch import nn

from ..capabilities import NativeMaps
from .abn import ABNResNet
from .abn_head import ABN_MAPS
from .arch import architecture
from .resnet import resnet_defaults


class MCOutput(NamedTuple):
    logits: torch.Tensor              # log mean probabilities of the more certain branch (B, K)
    probs_attention: torch.Tensor     # mean over passes (B, K)
    probs_perception: torch.Tensor    # mean over passes (B, K)
    entropy_attention: torch.Tensor   # predictive entropy (B,)
    entropy_perception: torch.Tensor  # predictive entropy (B,)
    map_mean: torch.Tensor            # mean of M(x) (B, 1, h, w)
    map_std: torch.Tensor             # standard deviation of M(x): the uncertainty map


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(1)


@contextlib.contextmanager
def mc_dropout(net: nn.Module) -> Iterator[None]:
    """Dropout on (and everything else as it was) for the duration of the block."""
    drops = [m for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    modes = [m.training for m in drops]
    try:
        for m in drops:
            m.train()
        yield
    finally:
        for m, mode in zip(drops, modes):
            m.train(mode)


@architecture("bayes_abn_resnet", resnet_defaults,
              "Bayesian ABN: ABN with Monte-Carlo dropout (Tsukahara et al. 2020)",
              native={"bayes_abn": NativeMaps(
                  "att_map", caption="Bayesian ABN: the mean attention map over Monte-Carlo "
                  "dropout passes; @std is their standard deviation, the map's uncertainty"),
                  "abn": ABN_MAPS},
              rescore="abn", feature_split=True, loss="abn")
class BayesABNResNet(ABNResNet):
    """ABN-ResNet with MC dropout; `samples` is the default number of passes T."""

    def __init__(self, dropout: float = 0.2, samples: int = 20, **abn_kwargs):
        super().__init__(dropout=dropout, **abn_kwargs)
        self.att_trunk.append(nn.Dropout(dropout))
        self.samples = samples

    def mc_forward(self, x: torch.Tensor, samples: int | None = None) -> MCOutput:
        t = samples or self.samples
        g = self.features(x)
        att_probs, per_probs, maps = [], [], []
        with mc_dropout(self):
            for _ in range(t):
                att_logits, m = self.attention(g)
                att_probs.append(att_logits.float().softmax(1))
                per_probs.append(self.perceive(g, m).float().softmax(1))
                maps.append(m.float())
        p_att, p_per = torch.stack(att_probs).mean(0), torch.stack(per_probs).mean(0)
        h_att, h_per = entropy(p_att), entropy(p_per)
        chosen = torch.where((h_att < h_per)[:, None], p_att, p_per)
        stacked = torch.stack(maps)
        return MCOutput(chosen.clamp_min(1e-12).log(), p_att, p_per, h_att, h_per,
                        stacked.mean(0), stacked.std(0, unbiased=False))
