"""Input-attribution methods reached through captum (not rewritten here): Integrated
Gradients, Saliency, Occlusion and guided backpropagation (for Guided Grad-CAM). Each returns a per-pixel map: the
absolute attribution summed over colour channels."""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from captum import attr

from .cam import GradCAM
from .core import Method, register


class CaptumMethod(Method):
    """Adapts a captum attribution class to the extractor call shape."""
    family = "attribution"
    needs_layer = False
    reads_activation = False
    uses_gradients = False  # captum runs its own forward/backward passes

    def attribute(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, x, acts, logits, targets):
        with torch.enable_grad(), warnings.catch_warnings():
            # captum's UserWarnings narrate its own internals (hooks it sets on ReLUs, inputs
            # it marks as requiring gradients): nothing a user of explain can act on
            warnings.filterwarnings("ignore", category=UserWarning, module=r"captum(\.|$)")
            a = self.attribute(x.detach().requires_grad_(True), targets)
        return a.detach().float().abs().sum(1, keepdim=True)


@register
class IntegratedGradients(CaptumMethod):
    name = "integrated_gradients"
    aliases = ("ig",)

    def attribute(self, x, targets):
        steps = int(self.options.get("steps", 32))
        return attr.IntegratedGradients(self.net).attribute(
            x, baselines=torch.zeros_like(x), target=targets, n_steps=steps,
            internal_batch_size=int(self.options.get("batch_size", 64)))


@register
class Saliency(CaptumMethod):
    name = "saliency"

    def attribute(self, x, targets):
        return attr.Saliency(self.net).attribute(x, target=targets)


@register
class Occlusion(CaptumMethod):
    name = "occlusion"

    def attribute(self, x, targets):
        c, h, w = x.shape[1:]
        win = int(self.options.get("window", max(3, min(h, w) // 8)))
        stride = int(self.options.get("stride", max(1, win // 2)))
        a = attr.Occlusion(self.net).attribute(
            x, sliding_window_shapes=(c, win, win), strides=(c, stride, stride), target=targets,
            perturbations_per_eval=int(self.options.get("batch_size", 32)))
        return a.clamp(min=0)  # evidence for the class: where occluding lowers the score


@register
class GuidedGradCAM(CaptumMethod):
    """Selvaraju et al. 2017: captum's guided backpropagation times the Grad-CAM of the
    target layer upsampled (nearest), as captum's GuidedGradCam computes it, but with
    explain's Grad-CAM, which also reads tokens (ViTs) and channels-last grids (Swin)."""
    name = "guided_gradcam"
    aliases = ("guided-gradcam",)
    needs_layer = True

    def attribute(self, x, targets):
        cam = GradCAM(self.model, layer=self.layer)(x, targets).raw
        guided = attr.GuidedBackprop(self.net).attribute(x, target=targets)
        return guided * F.interpolate(cam, size=tuple(x.shape[-2:]), mode="nearest")
