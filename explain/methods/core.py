"""The extractor base class: owns the hook lifecycle, target-layer resolution and mode
restoring; a method overrides one function.

A method runs in a *session*: the model in eval mode, its hook registered (through
`explain.hooks`). A call opens its own session and closes it in `finally`, removing the hook
and restoring the model's train/eval mode, so nothing leaks even when the forward raises;
`with Explainer(...)` holds one session open across its calls. Gradient methods switch
autograd on *at* the hooked layer: no graph is built upstream, and `torch.autograd.grad`
runs only from the target score back to that activation.
"""
from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Iterator, Sequence

import torch
from torch import nn

from ..errors import ExplainError
from ..explanation import Explanation, map_of
from ..hooks import Hooks
from ..model import Model
from ..tokens import as_grid

Targets = int | Sequence[int] | torch.Tensor | None

METHODS: dict[str, type["Method"]] = {}  # name -> class, in registration order
ALIASES: dict[str, str] = {}             # other spelling -> name


def register(cls: type["Method"]) -> type["Method"]:
    """Class decorator: make a method available by its `name` (and its `aliases`)."""
    METHODS[cls.name] = cls
    ALIASES.update({a: cls.name for a in cls.aliases})
    return cls


def as_model(model: Model | nn.Module) -> Model:
    if isinstance(model, Model):
        return model
    from ..preprocess import IMAGENET
    return Model(type(model).__name__, model, IMAGENET, [],
                 cam_layer=getattr(model, "cam_layer", None))


def find_module(net: nn.Module, path: str) -> nn.Module:
    modules = dict(net.named_modules())
    if path not in modules:
        raise ExplainError(f"{type(net).__name__} has no layer {path!r}; candidates: "
                           f"{', '.join(candidate_layers(net)[-8:])}", param="layer")
    return modules[path]


def candidate_layers(net: nn.Module) -> list[str]:
    return [n for n, m in net.named_modules()
            if n and isinstance(m, (nn.Sequential, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6))]


def locate_layer(net: nn.Module, x: torch.Tensor) -> str:
    """The module whose 4-D output (spatial size > 1) finishes last in a forward pass: the
    deepest spatial feature map, e.g. `layer4` of a ResNet or `features` of a VGG. Where
    an nn.MultiheadAttention runs after it (a ViT, whose only 4-D map is the patch
    embedding), the module whose output the last attention reads instead: the last block's
    norm, since after the last block only the CLS token reaches the classifier."""
    maps: list[str] = []
    latest: list = [None, None]          # the module that finished last, and its output
    attended: list[tuple[str, int]] = []  # (module feeding an attention, maps seen before)

    def finished(mod, inp, out, name):
        latest[:] = name, out
        if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] > 1:
            maps.append(name)

    def attends(mod, args, kwargs):
        query = args[0] if args else kwargs.get("query")
        if query is not None and query is latest[1]:
            attended.append((latest[0], len(maps)))

    with Hooks() as hooks, torch.no_grad():
        for name, m in net.named_modules():
            if name:
                hooks.forward(m, lambda mod, inp, out, name=name: finished(mod, inp, out, name))
            if isinstance(m, nn.MultiheadAttention):
                hooks.pre(m, attends, with_kwargs=True)
        net(x[:1])
    if attended and attended[-1][1] == len(maps):
        return attended[-1][0]
    if not maps:
        raise ExplainError(f"{type(net).__name__} has no layer with a spatial (4-D) output; "
                           "name one", param="layer")
    return maps[-1]


class Method:
    """Base extractor. Subclasses set `name` and override `compute`."""
    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()  # other accepted spellings of `name`
    family: ClassVar[str] = ""               # "native", "cam" or "attribution"
    uses_gradients: ClassVar[bool] = True
    needs_layer: ClassVar[bool] = True       # resolve a target layer
    reads_activation: ClassVar[bool] = True  # hook that layer's output

    @classmethod
    def unavailable(cls, model: Model) -> str | None:
        """Why this method cannot run on `model` (None: it can)."""
        return None

    @classmethod
    def own_layers(cls, model: Model) -> list[str]:
        """The layers this method reads on `model` where it has its own (a native map's
        modules, attention layers); [] where any layer will do (the CAM family)."""
        return []

    def __init__(self, model: Model | nn.Module, layer: str | None = None, **options: Any):
        self.model = as_model(model)
        self.net = self.model.net
        self.layer = layer
        self.layer_given = layer is not None  # all_maps gives only this layer's maps
        self.options = options
        self._hooks: Hooks | None = None   # while a session is open
        self._hooked: str | None = None    # the layer its hook reads
        self._acts: torch.Tensor | None = None

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Eval mode and this method's hook for the duration; calls inside reuse them.
        Re-entrant: an inner session is the outer one."""
        if self._hooks is not None:
            yield
            return
        was_training = self.net.training
        if was_training:  # net.eval() visits every module: skipped when already in eval mode
            self.net.eval()
        self._hooks = Hooks()
        try:
            yield
        finally:
            self._hooks.remove()
            self._hooks, self._hooked, self._acts = None, None, None
            if was_training:
                self.net.train()

    def resolve_layer(self, x: torch.Tensor) -> str:
        if self.layer is None:
            if self.model.cam_layer is None:  # found once per model, not once per batch
                self.model.cam_layer = locate_layer(self.net, x)
            self.layer = self.model.cam_layer
        return self.layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def compute(self, x: torch.Tensor, acts: torch.Tensor, logits: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        """The map (B, k, h, w) from the hooked activation (requires grad for gradient methods)."""
        raise NotImplementedError

    def _read(self, mod: nn.Module, inp: Any, out: torch.Tensor) -> torch.Tensor | None:
        """The forward hook on the target layer: keeps its output as `_acts`."""
        if not isinstance(out, torch.Tensor):
            raise ExplainError(f"{self.layer!r} outputs a {type(out).__name__}, not a tensor; "
                               "name a layer whose output is a feature map or tokens",
                               param="layer")
        if self.uses_gradients:
            torch.set_grad_enabled(True)  # build the graph from here on only
            self._acts = out.detach().requires_grad_(True)
            return self._acts
        self._acts = out.detach()
        return None

    def _hook(self, layer: str) -> None:
        """Hook `layer` for the open session (once; the layer is fixed once resolved)."""
        if self._hooked != layer:
            assert self._hooks is not None and self._hooked is None
            self._hooks.forward(find_module(self.net, layer), self._read)
            self._hooked = layer

    def __call__(self, x: torch.Tensor, targets: Targets = None) -> Explanation:
        if not torch.isfinite(x).all():  # NaN would spread through every map and score
            raise ExplainError(f"input holds NaN or infinite values "
                               f"({int((~torch.isfinite(x)).sum())} of {x.numel()}); "
                               "nothing to explain")
        x = x.to(self.model.device)
        with self.session():
            layer = self.resolve_layer(x) if self.needs_layer else None
            hooked = layer is not None and self.reads_activation
            if hooked:
                self._hook(layer)
            self._acts = None
            with torch.no_grad():
                logits = self.forward(x)
                if hooked and self._acts is None:
                    raise ExplainError(f"{layer!r} was not run by the forward pass", param="layer")
                t = self.targets(targets, logits)
                raw = self.compute(x, self._acts, logits, t).detach()
            self._acts = None
        maps = map_of(raw, tuple(x.shape[-2:]))
        return Explanation(maps, raw, logits.detach(), t, self.name, layer, self.extras())

    def all_maps(self, x: torch.Tensor, targets: Targets = None) -> dict[str, Explanation]:
        """Every map this method gives for `x`, keyed by name: one for most methods;
        native methods give one per attention module (`method@label`)."""
        return {self.name: self(x, targets)}

    def extras(self) -> dict[str, torch.Tensor]:
        return {}

    def as_map(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The hooked layer's output (or its gradient) as a map (B, C, h, w): tokens on their
        patch grid, a channels-last grid (Swin) permuted (explain.tokens)."""
        return as_grid(t, tuple(x.shape[-2:]), x.shape[0], f"layer {self.layer!r}")

    @staticmethod
    def targets(targets: Targets, logits: torch.Tensor) -> torch.Tensor:
        b, k = logits.shape
        if targets is None:
            t = logits.argmax(1)
        else:
            t = torch.as_tensor(targets, device=logits.device).long().flatten()
            t = t.expand(b) if t.numel() == 1 else t
            if t.numel() != b:
                raise ExplainError(f"{t.numel()} targets for a batch of {b}", param="targets")
            if (t < 0).any() or (t >= k).any():
                raise ExplainError(f"class index out of range 0..{k - 1}", param="targets")
        return t

    @staticmethod
    def score_grads(acts: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor
                    ) -> torch.Tensor:
        """d(target score)/d(activation), summed over the batch (samples are independent)."""
        score = logits.gather(1, targets[:, None]).sum()
        return torch.autograd.grad(score, acts)[0]
