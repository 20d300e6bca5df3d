"""The output folder: locked against a second run, and holding the settings a `--resume`
must match.

The lock is an `flock` on `.gallery/lock`: the kernel drops it when its process dies, so a
killed run never leaves a stale lock behind.
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from explain.atomic import atomic_write_text
from explain.errors import ExplainError

from .manifest import STATE, read_rows

SETTINGS = "settings.json"


class Lock:
    """Exclusive hold on `out` for one run (one process group under torchrun)."""

    def __init__(self, out: Path):
        path = out / STATE / "lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise ExplainError(f"{out}: another `explain gallery` run (pid {holder}) is "
                               "writing there; wait for it or choose another folder",
                               param="out") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        os.close(self.fd)  # closing drops the flock


def claim(out: Path, settings: dict, resume: bool) -> None:
    """Under the lock: refuse to mix galleries, then record this run's settings.

    Without --resume an existing gallery is left alone; with it, the settings must match
    the ones it was made with (same model, methods and rendering), or its rows would mix.
    """
    path = out / STATE / SETTINGS
    if path.exists():
        before = json.loads(path.read_text())
        if not resume:
            raise ExplainError(f"{out}: already holds a gallery ({len(read_rows(out))} "
                               "rows); pass --resume to continue it, or choose another folder",
                               param="out")
        keys = ("model", "methods", "size", "alpha", "cmap", "layer")
        diff = [f"{k} {before.get(k)!r} -> {settings.get(k)!r}" for k in keys
                if before.get(k) != settings.get(k)]
        if diff:
            raise ExplainError(f"{out} was built with other settings "
                               f"({'; '.join(diff)}); use the same ones or another --out",
                               param="resume")
    atomic_write_text(path, json.dumps(settings, indent=1) + "\n")
