"""Softmax attention read from a network's own forward pass, for the attention methods
(raw attention, rollout, gradient-weighted attention: explain.methods.attention).

Where a network attends is declared by its architecture (`Capabilities.attention`: modules
whose output is the softmax weights, as the project's ViT, Non-local and attention-augmented
ResNets name them) or, for any other network (torchvision's ViTs, a user's factory), found:
every `nn.MultiheadAttention`. Those compute their weights only when asked
(`need_weights=True`; torchvision's ViT asks not to), so a forward pre-hook asks for the
per-head weights and a forward hook takes them and hands the caller back what it asked for.
Nothing outside the hooked modules changes, and every hook goes through explain.hooks.

With `grad`, autograd is switched on at the first attention layer that runs, and the weights
of every layer stay in the graph, so that d(score)/dA is one `torch.autograd.grad` down to
the first layer only.
"""
from __future__ import annotations

import inspect
from fnmatch import fnmatchcase
from functools import partial
from typing import Any, Callable

import torch
from torch import nn

from .errors import ExplainError
from .hooks import Hooks
from .model import Model


def attention_layers(model: Model) -> list[str]:
    """Paths of the modules whose softmax attention the attention methods read, shallow to
    deep: those the architecture declares, else every nn.MultiheadAttention."""
    named = list(model.net.named_modules())
    if model.caps.attention:
        return [n for n, _ in named if fnmatchcase(n, model.caps.attention)]
    return [n for n, m in named if isinstance(m, nn.MultiheadAttention)]


def no_attention_reason(model: Model) -> str:
    """Why the attention methods cannot run on `model` (it has no attention layer)."""
    windowed = sorted({type(m).__name__ for m in model.net.modules()
                       if "window" in type(m).__name__.lower()})
    if windowed:
        return (f"model {model.name!r} attends within windows ({', '.join(windowed)}), not "
                "over the whole image: its attention is no map of the image; use gradcam "
                "(Grad-CAM on its stage outputs)")
    return (f"model {model.name!r} has no attention layer (no nn.MultiheadAttention and none "
            "declared by its architecture); use a CAM-family method such as gradcam")


class AttentionCapture:
    """Hooks on `layers` of `net` (registered through `hooks`) that keep each layer's
    softmax weights of the last forward pass: `weights[layer]` (B, heads, Tq, Tk), and with
    `grad` the tensors in the autograd graph that `gradients` differentiates.

    With `fuse` ((B, heads, Tq, Tk) -> (B, Tq, Tk), e.g. the head mean), only the fused
    weights are kept, as (B, 1, Tq, Tk), fused in the hook while the layer's weights are
    fresh in cache; the per-head weights are then freed as in a plain forward pass, and a
    method that needs no more (rollout) reads a heads-th of the memory afterwards."""

    def __init__(self, net: nn.Module, layers: list[str], hooks: Hooks, grad: bool = False,
                 fuse: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if grad and fuse is not None:
            raise ValueError("fused weights have no gradient to take")
        self.grad, self.fuse = grad, fuse
        self._graph: dict[str, torch.Tensor] = {}   # layer -> tensor in the graph
        self._shape: dict[str, tuple[int, ...]] = {}
        self._asked: dict[str, tuple[bool, bool]] = {}
        self._started = False
        modules = dict(net.named_modules())
        for name in layers:
            module = modules[name]
            if isinstance(module, nn.MultiheadAttention):
                hooks.pre(module, partial(self._ask_weights, name), with_kwargs=True)
                hooks.forward(module, partial(self._take_weights, name), with_kwargs=True)
            else:
                hooks.forward(module, partial(self._softmax_output, name))

    def reset(self) -> None:
        """Before each forward pass."""
        self._graph.clear()
        self._shape.clear()
        self._started = False

    def _start(self) -> bool:
        """Switch autograd on at the first attention layer of a pass (when asked to)."""
        if not self.grad or self._started:
            return False
        self._started = True
        torch.set_grad_enabled(True)
        return True

    def _softmax_output(self, name: str, module: nn.Module, inputs: Any, out: Any
                        ) -> torch.Tensor | None:
        if not isinstance(out, torch.Tensor) or out.ndim not in (3, 4):
            raise ExplainError(f"{name!r} was declared as softmax attention but gives "
                               f"{_describe(out)}, not weights (B, heads, T, T)", param="layer")
        first = self._start()
        a = out.detach().requires_grad_(True) if first else out
        self._keep(name, a, a.shape if a.ndim == 4 else (a.shape[0], 1, *a.shape[1:]))
        return a if first else None

    def _ask_weights(self, name: str, module: nn.Module, args: tuple, kwargs: dict
                     ) -> tuple[tuple, dict]:
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        given = bound.arguments
        self._asked[name] = (given.get("need_weights", True), given.get("average_attn_weights", True))
        given["need_weights"], given["average_attn_weights"] = True, False
        if self._start():  # the graph starts at this layer's inputs (parameters may be frozen)
            leaves: dict[int, torch.Tensor] = {}
            for key in ("query", "key", "value"):  # self-attention passes one tensor thrice
                t = given[key]
                given[key] = leaves.setdefault(id(t), t.detach().requires_grad_(True))
        return bound.args, bound.kwargs

    def _take_weights(self, name: str, module: nn.Module, args: tuple, kwargs: dict,
                      output: tuple) -> tuple:
        out, w = output
        # torch returns the per-head weights as a view of the tensor it multiplied with V
        # (nn.functional.multi_head_attention_forward): the gradient lives at that base
        base = w._base if w.requires_grad and w._base is not None else w
        self._keep(name, base, w.shape)
        need, average = self._asked.pop(name)
        return out, (w.mean(1) if average else w) if need else None

    def _keep(self, name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
        if self.fuse is not None:
            tensor = self.fuse(tensor.detach().reshape(shape).float())[:, None]
            shape = tensor.shape
        self._graph[name] = tensor
        self._shape[name] = tuple(shape)

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """layer -> (B, heads, Tq, Tk) softmax weights of the last pass, in the order run."""
        return {n: t.detach().reshape(self._shape[n]).float() for n, t in self._graph.items()}

    def gradients(self, score: torch.Tensor) -> dict[str, torch.Tensor]:
        """layer -> d(score)/dA (B, heads, Tq, Tk), for a pass run with `grad`."""
        names = list(self._graph)
        grads = torch.autograd.grad(score, [self._graph[n] for n in names], allow_unused=True)
        missing = [n for n, g in zip(names, grads) if g is None]
        if missing:
            raise ExplainError(f"the score does not depend on the attention of {missing[0]!r}",
                               param="layer")
        return {n: g.reshape(self._shape[n]).float() for n, g in zip(names, grads)}


def _describe(out: Any) -> str:
    return f"a tensor {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
