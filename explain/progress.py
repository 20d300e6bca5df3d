"""Progress of long computations (Score-CAM's masked forward passes, occlusion's sliding
window): reported to a listener when one is set, silent otherwise. The library never draws
anything itself; the command line sets a listener that draws a progress bar on stderr.

    with progress.task("scorecam", total=64) as advance:
        for chunk in chunks:
            ...
            advance(len(chunk))
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterator

Advance = Callable[[int], None]
Listener = Callable[[str, int], ContextManager[Advance]]

_listener: Listener | None = None


def set_listener(listener: Listener | None) -> Listener | None:
    """Report every task to `listener(description, total)`, a context manager yielding the
    function that advances it; None: report nothing. Returns the previous listener."""
    global _listener
    previous, _listener = _listener, listener
    return previous


def listening() -> bool:
    return _listener is not None


@contextlib.contextmanager
def task(description: str, total: int) -> Iterator[Advance]:
    """A unit of work of `total` steps; yields the function that advances it by n steps."""
    if _listener is None:
        yield lambda n: None
        return
    with _listener(description, total) as advance:
        yield advance
