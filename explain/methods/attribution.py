"""Input-attribution methods reached through captum (not rewritten here): Integrated
Gradients, Saliency (and SmoothGrad: captum's NoiseTunnel, which every one of them takes),
Occlusion and guided backpropagation (for Guided Grad-CAM). Each returns a per-pixel map: the
absolute attribution summed over colour channels."""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from captum import attr

from .. import progress
from ..errors import ExplainError
from .cam import GradCAM
from .core import Method, register

TUNNELS = ("smoothgrad", "smoothgrad_sq", "vargrad")


class CaptumMethod(Method):
    """Adapts a captum attribution class to the extractor call shape. Every one takes the
    options `noise_tunnel` (smoothgrad, smoothgrad_sq or vargrad: captum's NoiseTunnel over
    the method), `nt_samples` (16) and `nt_stdev` (0.15, times the batch's value range)."""
    family = "attribution"
    needs_layer = False
    reads_activation = False
    uses_gradients = False  # captum runs its own forward/backward passes
    noise_tunnel: str | None = None  # the method's own default

    def attribution(self) -> attr.Attribution:
        """The captum method."""
        raise NotImplementedError

    def attribute_kwargs(self, x: torch.Tensor) -> dict:
        """Its own arguments to `attribute`, beside the input and the target."""
        return {}

    def attribute(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        tunnel = self.options.get("noise_tunnel", self.noise_tunnel)
        method, kwargs = self.attribution(), self.attribute_kwargs(x)
        if tunnel is None:
            return method.attribute(x, target=targets, **kwargs)
        if tunnel not in TUNNELS:
            raise ExplainError(f"{tunnel!r}: choose {', '.join(TUNNELS)}", param="noise_tunnel")
        samples = int(self.options.get("nt_samples", 16))
        spread = float(x.detach().max() - x.detach().min())
        stdev = float(self.options.get("nt_stdev", 0.15)) * spread
        per_pass = max(1, int(self.options.get("batch_size", 64)) // len(x))
        return attr.NoiseTunnel(method).attribute(
            x, nt_type=tunnel, nt_samples=samples, nt_samples_batch_size=min(samples, per_pass),
            stdevs=stdev, target=targets, **kwargs)

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

    def attribution(self):
        return attr.IntegratedGradients(self.net)

    def attribute_kwargs(self, x):
        return {"baselines": torch.zeros_like(x), "n_steps": int(self.options.get("steps", 32)),
                "internal_batch_size": int(self.options.get("batch_size", 64))}


@register
class Saliency(CaptumMethod):
    name = "saliency"

    def attribution(self):
        return attr.Saliency(self.net)


@register
class SmoothGrad(Saliency):
    """Smilkov et al. 2017: saliency averaged over noisy copies of the input, through
    captum's NoiseTunnel (options as every captum method's)."""
    name = "smoothgrad"
    noise_tunnel = "smoothgrad"


@register
class Occlusion(CaptumMethod):
    name = "occlusion"

    def attribution(self):
        return attr.Occlusion(self.net)

    def attribute_kwargs(self, x):
        c, h, w = x.shape[1:]
        win = int(self.options.get("window", max(3, min(h, w) // 8)))
        stride = int(self.options.get("stride", max(1, win // 2)))
        return {"sliding_window_shapes": (c, win, win), "strides": (c, stride, stride),
                "perturbations_per_eval": int(self.options.get("batch_size", 32)),
                "show_progress": progress.listening()}  # captum's own bar where the CLI shows bars

    def attribute(self, x, targets):
        return super().attribute(x, targets).clamp(min=0)  # evidence: occluding lowers the score


@register
class GuidedGradCAM(CaptumMethod):
    """Selvaraju et al. 2017: captum's guided backpropagation times the Grad-CAM of the
    target layer upsampled (nearest), as captum's GuidedGradCam computes it, but with
    explain's Grad-CAM, which also reads tokens (ViTs) and channels-last grids (Swin)."""
    name = "guided_gradcam"
    aliases = ("guided-gradcam",)
    needs_layer = True

    def attribution(self):
        return attr.GuidedBackprop(self.net)

    def attribute(self, x, targets):
        if self.options.get("noise_tunnel"):
            raise ExplainError("guided_gradcam has no noise tunnel (it is a product of two "
                               "maps); use it on saliency or integrated_gradients",
                               param="noise_tunnel")
        cam = GradCAM(self.model, layer=self.layer)(x, targets).raw
        guided = self.attribution().attribute(x, target=targets)
        return guided * F.interpolate(cam, size=tuple(x.shape[-2:]), mode="nearest")
