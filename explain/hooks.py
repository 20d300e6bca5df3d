"""Module hooks with a guaranteed end. Every place that hooks a user's network (methods,
native-map capture, layer search, the sanity check) registers through a `Hooks` set, which
removes all of its hooks together when its `with` block ends, exception or not, so that no
code path leaves a hook behind on a model it was lent.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn
from torch.utils.hooks import RemovableHandle


class Hooks:
    """A set of forward (and forward-pre) hooks, removed together by `remove()` or on
    leaving `with Hooks() as hooks:`."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def forward(self, module: nn.Module, fn: Callable[..., Any], with_kwargs: bool = False
                ) -> None:
        """`fn(module, inputs, output)` (`fn(module, args, kwargs, output)` with
        `with_kwargs`) after `module` runs; a non-None return replaces the output."""
        self._handles.append(module.register_forward_hook(fn, with_kwargs=with_kwargs))

    def pre(self, module: nn.Module, fn: Callable[..., Any], with_kwargs: bool = False) -> None:
        """`fn(module, inputs)` (`fn(module, args, kwargs)` with `with_kwargs`) before
        `module` runs; a non-None return replaces the inputs (`(args, kwargs)`)."""
        self._handles.append(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs))

    def __len__(self) -> int:
        return len(self._handles)

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self) -> "Hooks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
