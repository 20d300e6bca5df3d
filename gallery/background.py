"""The gallery's helpers -- decoding in DataLoader workers, colour mapping and PNG writing on
threads -- run at a lower scheduling priority than the model.

Why (benchmarks/results/gallery_throughput.md, 2 torch threads on 2 cores): the gallery
reached 81% of the bare model + maps throughput while using 1.48 cores, against the bare
run's 1.95, and its CPU time per image was no higher than the bare run's. The helpers add
little work; what is lost is idle time. The model's operations are parallel regions over
both cores, and a helper that takes a core in the middle of one stalls it until its
thread runs again. At a lower priority the helpers run in the gaps between the model's
operations instead. Linux only (there a thread's priority is its own); elsewhere nothing
changes.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading

NICE = 10  # added to the helpers' nice value


def lower_priority(*_: object) -> None:
    """Lower the calling thread's scheduling priority by NICE (a DataLoader
    `worker_init_fn` or a thread pool's `initializer`)."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):  # not permitted, or a kernel without per-thread nice
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + NICE))
