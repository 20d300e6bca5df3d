"""The extractor base class: owns the hook lifecycle, target-layer resolution and mode
restoring; a method overrides one function.

Every call registers its hooks, runs, and removes them in `finally`, and restores the
model's train/eval mode, so nothing leaks even when the forward raises. Gradient methods
switch autograd on *at* the hooked layer: no graph is built upstream, and
`torch.autograd.grad` runs only from the target score back to that activation.
"""
from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Iterator, Sequence

import torch
from torch import nn

from ..errors import ExplainError
from ..explanation import Explanation, normalise, upsample
from ..registry import Model

Targets = int | Sequence[int] | torch.Tensor | None


def as_model(model: Model | nn.Module) -> Model:
    if isinstance(model, Model):
        return model
    from ..preprocess import IMAGENET
    return Model(type(model).__name__, model, IMAGENET, [],
                 cam_layer=getattr(model, "cam_layer", None))


def find_module(net: nn.Module, path: str) -> nn.Module:
    modules = dict(net.named_modules())
    if path not in modules:
        raise ExplainError(f"--layer: {type(net).__name__} has no layer {path!r}; candidates: "
                           f"{', '.join(candidate_layers(net)[-8:])}")
    return modules[path]


def candidate_layers(net: nn.Module) -> list[str]:
    return [n for n, m in net.named_modules()
            if n and isinstance(m, (nn.Sequential, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6))]


def locate_layer(net: nn.Module, x: torch.Tensor) -> str:
    """The module whose 4-D output (spatial size > 1) finishes last in a forward pass: the
    deepest spatial feature map, e.g. `layer4` of a ResNet or `features` of a VGG."""
    last: list[str] = []
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, name=name: last.append(name)
        if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] > 1 else None)
        for name, m in net.named_modules() if name]
    try:
        with torch.no_grad():
            net(x[:1])
    finally:
        for h in hooks:
            h.remove()
    if not last:
        raise ExplainError(f"{type(net).__name__}: no layer with a spatial (4-D) output; "
                           "give --layer")
    return last[-1]


class Method:
    """Base extractor. Subclasses set `name` and override `compute`."""
    name: ClassVar[str]
    uses_gradients: ClassVar[bool] = True
    needs_layer: ClassVar[bool] = True       # resolve a target layer
    reads_activation: ClassVar[bool] = True  # hook that layer's output

    def __init__(self, model: Model | nn.Module, layer: str | None = None, **options: Any):
        self.model = as_model(model)
        self.net = self.model.net
        self.layer = layer
        self.options = options

    def __enter__(self) -> "Method":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def resolve_layer(self, x: torch.Tensor) -> str:
        if self.layer is None:
            self.layer = self.model.cam_layer or locate_layer(self.net, x)
        return self.layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def compute(self, x: torch.Tensor, acts: torch.Tensor, logits: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        """The map (B, k, h, w) from the hooked activation (requires grad for gradient methods)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _hooked(self, module: nn.Module, store: dict) -> Iterator[None]:
        def hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> torch.Tensor | None:
            if self.uses_gradients:
                torch.set_grad_enabled(True)  # build the graph from here on only
                out = out.detach().requires_grad_(True)
                store["acts"] = out
                return out
            store["acts"] = out.detach()
            return None

        handle = module.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def __call__(self, x: torch.Tensor, targets: Targets = None) -> Explanation:
        x = x.to(self.model.device)
        was_training = self.net.training
        self.net.eval()
        store: dict[str, torch.Tensor] = {}
        try:
            layer = self.resolve_layer(x) if self.needs_layer else None
            hooked = layer is not None and self.reads_activation
            ctx = self._hooked(find_module(self.net, layer), store) if hooked else contextlib.nullcontext()
            with torch.no_grad(), ctx:
                logits = self.forward(x)
                if hooked and "acts" not in store:
                    raise ExplainError(f"--layer: {layer!r} was not run by the forward pass")
                t = self.targets(targets, logits)
                raw = self.compute(x, store.get("acts"), logits, t).detach()
        finally:
            self.net.train(was_training)
        maps = normalise(upsample(raw.mean(1, keepdim=True), tuple(x.shape[-2:])))
        return Explanation(maps, raw, logits.detach(), t, self.name, layer, self.extras(store))

    def extras(self, store: dict) -> dict[str, torch.Tensor]:
        return {}

    @staticmethod
    def targets(targets: Targets, logits: torch.Tensor) -> torch.Tensor:
        b, k = logits.shape
        if targets is None:
            t = logits.argmax(1)
        else:
            t = torch.as_tensor(targets, device=logits.device).long().flatten()
            t = t.expand(b) if t.numel() == 1 else t
            if t.numel() != b:
                raise ExplainError(f"--target: {t.numel()} targets for a batch of {b}")
            if (t < 0).any() or (t >= k).any():
                raise ExplainError(f"--target: class index out of range 0..{k - 1}")
        return t

    @staticmethod
    def score_grads(acts: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor
                    ) -> torch.Tensor:
        """d(target score)/d(activation), summed over the batch (samples are independent)."""
        score = logits.gather(1, targets[:, None]).sum()
        return torch.autograd.grad(score, acts)[0]
