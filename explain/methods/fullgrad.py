"""FullGrad (Srinivas & Fleuret, NeurIPS 2019): the full-gradient decomposition of the
output into input-gradient x input and the bias-gradients of every layer, each part made a
map and the maps summed.

S = psi(dy/dx * x) + sum over layers with a bias, and over their channels, of
psi(dy/dz * b): z a layer's output, b its bias per channel (a convolution's bias; a
BatchNorm's effective bias beta - mu gamma / sigma in eval mode). psi: the absolute value,
min-max normalised per image over channels and positions, resized (bilinear, corners
aligned) to the input, summed over channels; as the authors' code, layers with spatial
(4-D) outputs only. One forward and one backward pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..hooks import Hooks
from .core import Method, register


def effective_bias(module: nn.Module) -> torch.Tensor | None:
    """The bias a layer adds per output channel (None where it adds none)."""
    if isinstance(module, nn.Conv2d):
        return module.bias
    if isinstance(module, nn.BatchNorm2d) and module.affine and module.running_mean is not None:
        scale = module.weight / torch.sqrt(module.running_var + module.eps)
        return module.bias - module.running_mean * scale
    return None


def psi(t: torch.Tensor, size: tuple[int, int], eps: float = 1e-6) -> torch.Tensor:
    """|t| (B, C, h, w) min-max normalised per image, resized to `size`, summed over channels."""
    t = t.abs()
    flat = t.flatten(1)
    t = t - flat.min(1).values.view(-1, 1, 1, 1)
    t = t / (t.flatten(1).max(1).values.view(-1, 1, 1, 1) + eps)
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=True)
    return t.sum(1, keepdim=True)


@register
class FullGrad(Method):
    """Srinivas & Fleuret 2019: input-gradient x input plus every layer's bias-gradients."""
    name = "fullgrad"
    family = "attribution"
    needs_layer = False
    reads_activation = False
    uses_gradients = False  # its own forward and backward below

    def compute(self, x, acts, logits, targets):
        biased = [(n, m) for n, m in self.net.named_modules() if effective_bias(m) is not None]
        outs: dict[str, torch.Tensor] = {}

        def keep(name: str, out: torch.Tensor) -> torch.Tensor:
            outs[name] = out
            return out.clone()  # what runs on may be changed in place (ReLU(inplace=True))
        with Hooks() as hooks, torch.enable_grad():
            for name, m in biased:
                hooks.forward(m, lambda mod, inp, out, name=name: keep(name, out))
            xg = x.detach().requires_grad_(True)
            score = self.net(xg).float().gather(1, targets[:, None]).sum()
            names = [n for n, m in biased if n in outs and outs[n].ndim == 4]
            grads = torch.autograd.grad(score, [xg] + [outs[n] for n in names], allow_unused=True)
        size = tuple(x.shape[-2:])
        with torch.no_grad():
            total = psi(grads[0] * x, size)
            modules = dict(biased)
            for name, g in zip(names, grads[1:]):
                if g is not None:
                    total = total + psi(g * effective_bias(modules[name]).view(1, -1, 1, 1), size)
        return total
