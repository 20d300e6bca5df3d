"""CAM family: each method is the base class plus one overridden function.

Gradient CAMs weight the hooked activation A (B, K, h, w) by per-channel weights from the
gradient of the target score; `GradCAMBase.weights` is the one place they differ.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ExplainError
from ..explanation import normalise
from .core import Method, register


@register
class CAM(Method):
    """Zhou et al. 2016: M_c = sum_k w^c_k A_k with w the linear classifier after global
    average pooling of the hooked layer; needs no gradient."""
    name = "cam"
    family = "cam"
    uses_gradients = False

    def classifier(self, channels: int, classes: int) -> nn.Linear:
        """The last linear layer from the hooked channels to the classes (not, say, a gate
        that reads the same pooled features)."""
        fits = [m for m in self.net.modules() if isinstance(m, nn.Linear)
                and m.in_features == channels and m.out_features == classes]
        if not fits:
            raise ExplainError(f"cam: no linear classifier maps the {channels} channels of "
                               f"layer {self.layer!r} to the {classes} classes; CAM needs a "
                               "GAP -> linear head (use gradcam instead)")
        return fits[-1]

    def compute(self, x, acts, logits, targets):
        acts = self.as_map(acts, x)
        fc = self.classifier(acts.shape[1], logits.shape[1])
        w = fc.weight[targets].float()  # (B, K)
        return F.relu(torch.einsum("bk,bkhw->bhw", w, acts.float()).unsqueeze(1))


class GradCAMBase(Method):
    """L = ReLU(sum_k w_k A_k) with w from `weights(acts, grads)`."""
    family = "cam"

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, x, acts, logits, targets):
        grads = self.score_grads(acts, logits, targets)
        acts, grads = self.as_map(acts.detach(), x).float(), self.as_map(grads, x).float()
        w = self.weights(acts, grads)
        return F.relu((w * acts).sum(1, keepdim=True))


@register
class GradCAM(GradCAMBase):
    """Selvaraju et al. 2017: w_k = mean over positions of dY/dA_k."""
    name = "gradcam"
    aliases = ("grad-cam",)

    def weights(self, acts, grads):
        return grads.mean(dim=(2, 3), keepdim=True)


@register
class GradCAMPlusPlus(GradCAMBase):
    """Chattopadhay et al. 2018, with exp(score) so higher-order terms are powers of g."""
    name = "gradcampp"
    aliases = ("gradcam++",)

    def weights(self, acts, grads):
        g2, g3 = grads.pow(2), grads.pow(3)
        denom = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        return (alpha * F.relu(grads)).sum(dim=(2, 3), keepdim=True)


@register
class XGradCAM(GradCAMBase):
    """Fu et al. 2020: w_k = sum(A_k * dY/dA_k) / sum(A_k)."""
    name = "xgradcam"

    def weights(self, acts, grads):
        s = acts.sum(dim=(2, 3), keepdim=True)
        return (acts * grads).sum(dim=(2, 3), keepdim=True) / torch.where(s != 0, s, torch.ones_like(s))


@register
class LayerCAM(GradCAMBase):
    """Jiang et al. 2021: per-position weights ReLU(dY/dA)."""
    name = "layercam"

    def weights(self, acts, grads):
        return F.relu(grads)


@register
class ScoreCAM(Method):
    """Wang et al. 2020: each channel, upsampled and min-max normalised, masks the input;
    its weight is the softmax target score of the masked input. Batched over channels."""
    name = "scorecam"
    family = "cam"
    aliases = ("score-cam",)
    uses_gradients = False

    def compute(self, x, acts, logits, targets):
        batch = int(self.options.get("batch_size", 64))
        acts = self.as_map(acts, x)
        b, k = acts.shape[:2]
        masks = normalise(F.interpolate(acts.float(), size=x.shape[-2:], mode="bilinear",
                                        align_corners=False).flatten(0, 1)).view(b, k, 1, *x.shape[-2:])
        scores = torch.empty(b, k, device=x.device)
        for i in range(b):
            for s in range(0, k, batch):
                m = masks[i, s:s + batch]
                out = self.net(x[i:i + 1] * m).float().softmax(1)
                scores[i, s:s + batch] = out[:, targets[i]]
        return F.relu((scores.softmax(1)[:, :, None, None] * acts.float()).sum(1, keepdim=True))
