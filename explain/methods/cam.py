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
from ..hooks import Hooks
from ..progress import task
from ..tokens import channel_axis
from .core import Method, find_module, register


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
    """Wang et al. 2020: each channel A_k of the target layer, upsampled and min-max
    normalised to H_k, masks the input; its weight is the target class's softmax
    probability on the masked input, w_k = p_c(x * H_k), and the map ReLU(sum_k w_k A_k),
    as the authors' code computes it.

    Fast by default: only the `channels` (default 64) channels of highest mean activation of
    each image are scored and summed (EfficientNet-Lite0's last layer has 1,280; on
    benchmarks/scorecam_speed.py's photos the map correlates >= 0.95 with the full one).
    `channels=0` scores every channel, the method as published. Masked inputs go through
    the network `batch_size` (64) at a time, channels-last; progress is reported
    (explain.progress)."""
    name = "scorecam"
    family = "cam"
    aliases = ("score-cam",)
    uses_gradients = False
    CHANNELS = 64

    def compute(self, x, acts, logits, targets):
        batch = int(self.options.get("batch_size", 64))
        keep = int(self.options.get("channels", self.CHANNELS) or 0)
        acts = self.as_map(acts, x).float()
        b, k = acts.shape[:2]
        if 0 < keep < k:  # the channels of highest mean activation, per image
            top = acts.mean(dim=(2, 3)).topk(keep, dim=1).indices
            acts = acts.gather(1, top[:, :, None, None].expand(-1, -1, *acts.shape[2:]))
            k = keep
        masks = normalise(F.interpolate(acts, size=x.shape[-2:], mode="bilinear",
                                        align_corners=False).flatten(0, 1)).view(b, k, 1, *x.shape[-2:])
        scores = torch.empty(b, k, device=x.device)
        with task(f"{self.name}: masked inputs", b * k) as advance:
            for i in range(b):
                for s in range(0, k, batch):
                    m = masks[i, s:s + batch]
                    # channels-last: ~1.5x faster convolutions on CPUs, the same numbers
                    masked = (x[i:i + 1] * m).contiguous(memory_format=torch.channels_last)
                    out = self.net(masked).float().softmax(1)
                    scores[i, s:s + batch] = out[:, targets[i]]
                    advance(len(m))
        return F.relu((scores[:, :, None, None] * acts).sum(1, keepdim=True))


@register
class HiResCAM(GradCAMBase):
    """Draelos & Carin 2020: the gradient times the activation position by position, summed
    over channels (the gradient is not averaged over positions)."""
    name = "hirescam"
    aliases = ("hires-cam",)

    def weights(self, acts, grads):
        return grads


@register
class EigenCAM(Method):
    """Muhammad & Yeasin 2020: the first principal component of the activations, no class
    and no gradient. The (positions x channels) matrix, centred over positions, is projected
    on its first right singular vector; of the two signs the projection can take, the one
    that correlates positively with the channel-mean activation; then ReLU."""
    name = "eigencam"
    aliases = ("eigen-cam",)
    family = "cam"
    uses_gradients = False

    def compute(self, x, acts, logits, targets):
        a = self.as_map(acts, x).float()
        b, _, h, w = a.shape
        m = a.flatten(2).transpose(1, 2)
        m = m - m.mean(1, keepdim=True)                                   # (B, hw, K)
        proj = (m @ torch.linalg.svd(m, full_matrices=False).Vh[:, 0, :, None])[..., 0]
        mean = a.mean(1).flatten(1)
        agree = ((proj - proj.mean(1, keepdim=True)) * (mean - mean.mean(1, keepdim=True))).sum(1)
        sign = torch.where(agree < 0, -1.0, 1.0)[:, None]
        return F.relu(proj * sign).view(b, 1, h, w)


@register
class AblationCAM(Method):
    """Desai & Ramaswamy 2020: w_k = (y_c - y_c^k) / y_c with y_c the target's score and
    y_c^k the score with channel k of the layer set to zero; ReLU(sum_k w_k A_k). One
    forward pass per channel, batched (option `batch_size`, default 64)."""
    name = "ablationcam"
    aliases = ("ablation-cam",)
    family = "cam"
    uses_gradients = False

    def compute(self, x, acts, logits, targets):
        batch = int(self.options.get("batch_size", 64))
        axis = channel_axis(acts, tuple(x.shape[-2:]))
        b, k = x.shape[0], acts.shape[axis]
        mask: list[torch.Tensor] = []
        scores = torch.empty(b, k, device=x.device)
        with Hooks() as hooks, task(f"{self.name}: ablated channels", b * k) as advance:
            hooks.forward(find_module(self.net, self.layer), lambda mod, inp, out: out * mask[0])
            for s in range(0, k, batch):
                n = min(batch, k - s)
                m = torch.ones(n, k, device=x.device, dtype=acts.dtype)
                m[torch.arange(n), s + torch.arange(n)] = 0
                shape = [1] * acts.ndim
                shape[0], shape[axis] = n, k
                mask[:] = [m.view(shape)]
                for i in range(b):
                    out = self.net(x[i:i + 1].expand(n, *x.shape[1:])).float()
                    scores[i, s:s + n] = out[:, targets[i]]
                advance(n * b)
        y = logits.float().gather(1, targets[:, None])
        w = (y - scores) / torch.where(y != 0, y, torch.ones_like(y))
        return F.relu((w[:, :, None, None] * self.as_map(acts, x).float()).sum(1, keepdim=True))
