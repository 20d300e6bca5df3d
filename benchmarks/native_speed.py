"""Native map extraction time of the attention family as a multiple of a plain forward pass of
the same model on the same batch, measured side by side in one process (BENCHMARKS.md,
"Speed"; goal for RAN and CBAM: at most 1.05; for the self-attention maps, raw attention
and rollout at most 1.05, gradient-weighted attention at most 1.3).

Per model: a plain no-grad forward, the default native map (`Explainer(model, m)(x)`), every
native map of the model from one pass (`all_maps`), where it has attention layers its raw
attention (default layer and all maps), rollout and gradient-weighted attention, with the
floor of any exact gradient at every attention layer beside it (the forward pass with
autograd from the first attention layer on, and one backward from the top score to that
layer's input: no weight gradients, no map), and Grad-CAM for comparison. Calls are
interleaved round-robin (benchmarks/speed.py) and each figure is a median after warm-up (of
--reps calls at 224 px, three times as many at 28 px, where a call is ten times cheaper and
machine noise a larger part of it). Models: Attention-56, CBAM-ResNet-50 and torchvision's
ViT-B/16 at 224 px (batch 8, random weights), and the Fashion-MNIST-sized defaults of every
family member, the ViT, Non-local and attention-augmented ResNet-20 included (28 px,
batch 256, random weights).

    python benchmarks/native_speed.py [--reps 7] [--quick] [--threads N]

Writes benchmarks/results/native_speed.json and native_speed.md.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speed import cli, time_round_robin, to_markdown  # noqa: E402  (benchmarks/speed.py)

from explain.attention import attention_layers  # noqa: E402
from explain.methods import METHODS, Explainer  # noqa: E402
from explain.models import build, get_arch  # noqa: E402
from explain.preprocess import IMAGENET, InputSpec  # noqa: E402
from explain.registry import Model, arch_model  # noqa: E402

FMNIST = InputSpec(size=(28, 28), channels=1, mean=(0.286,), std=(0.353,))


def random_model(arch: str, size: int, classes: int) -> Model:
    torch.manual_seed(0)
    channels = 1 if size <= 64 else 3
    net = build(arch, get_arch(arch).kwargs(classes, channels, size)).eval()
    spec = FMNIST if size <= 64 else IMAGENET
    return arch_model(arch, net, arch, spec, [str(i) for i in range(classes)])


def torchvision_vit_b_16() -> Model:
    """torchvision's vit_b_16 as `explain --model torchvision:vit_b_16` builds it."""
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.vit_b_16().eval()
    return Model("torchvision:vit_b_16", net, IMAGENET, [str(i) for i in range(1000)])


def backward_floor(model: Model) -> Callable[[torch.Tensor], object]:
    """A forward pass with autograd switched on at the first attention layer and one
    backward from the top score to that layer's input, nothing else (no weight gradients,
    no map): the least an exact gradient at every attention layer costs."""
    first = dict(model.net.named_modules())[attention_layers(model)[0]]
    leaf: list[torch.Tensor] = []

    def start_graph(module, args):
        torch.set_grad_enabled(True)
        leaf.append(args[0].detach().requires_grad_())
        return (leaf[-1],) * len(args) if len(args) == 3 else (leaf[-1], *args[1:])

    def run(x: torch.Tensor):
        leaf.clear()
        handle = first.register_forward_pre_hook(start_graph)
        try:
            with torch.no_grad():
                score = model.net(x).amax(1).sum()
            return torch.autograd.grad(score, leaf[0])[0]
        finally:
            handle.remove()
    return run


def case(label: str, model: Model, x: torch.Tensor, reps: int) -> list[dict]:
    net = model.net

    def plain():
        with torch.no_grad():
            net(x)
    fns: dict[str, Callable] = {"forward": plain}
    for m in sorted(model.native):
        n = len(model.native_maps(m))
        fns[f"native {m} (default map)"] = lambda m=m: Explainer(model, m)(x)
        if n > 1:
            fns[f"native {m} (all {n} maps)"] = lambda m=m: Explainer(model, m).all_maps(x)
    if METHODS["attention"].unavailable(model) is None:
        fns["raw attention (default layer)"] = lambda: Explainer(model, "attention")(x)
        fns["raw attention (all maps)"] = lambda: Explainer(model, "attention").all_maps(x)
        fns["rollout"] = lambda: Explainer(model, "rollout")(x)
        fns["gradient-weighted attention"] = lambda: Explainer(model, "grad_attention")(x)
        floor = backward_floor(model)
        fns["(floor) backward to the first attention layer"] = lambda: floor(x)
    fns["Grad-CAM"] = lambda: Explainer(model, "gradcam")(x)
    med = time_round_robin(fns, reps)
    base = med["forward"]
    rows = [{"model": label, "batch": tuple(x.shape), "method": k, "ms": round(v * 1e3, 2),
             "ratio": round(v / base, 3)} for k, v in med.items()]
    print(to_markdown(rows), flush=True)
    return rows


def measure(reps: int, quick: bool) -> list[dict]:
    rows: list[dict] = []
    if not quick:
        x224 = torch.randn(8, 3, 224, 224)
        rows += case("Attention-56 (random weights)", random_model("ran", 224, 1000), x224, reps)
        rows += case("CBAM-ResNet-50 (random weights)", random_model("cbam_resnet", 224, 1000),
                     x224, reps)
        rows += case("torchvision ViT-B/16 (random weights)", torchvision_vit_b_16(), x224, reps)
    x28 = torch.randn(256, 1, 28, 28)
    for arch, label in [("ran", "RAN small"), ("cbam_resnet", "CBAM-ResNet-20"),
                        ("se_resnet", "SE-ResNet-20"), ("attend_rectify", "A&R WRN-22-1"),
                        ("bayes_abn_resnet", "Bayesian ABN-ResNet-20, T=20"),
                        ("vit", "ViT patch 4, 6 blocks"), ("nonlocal_resnet", "Non-local ResNet-20"),
                        ("aa_resnet", "AA-ResNet-20")]:
        rows += case(f"{label} (28 px, random weights)", random_model(arch, 28, 10), x28,
                     3 * reps)  # a tenth of a 224 px batch's time: medians of more calls
    return rows


def main() -> None:
    cli(__doc__, measure, "native_speed", 7, "the 28 px models only",
        lambda r: f"median of {r} at 224 px, of {3 * r} at 28 px")


if __name__ == "__main__":
    main()
