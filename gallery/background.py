"""The gallery's decoding workers run at a lower scheduling priority than the model when
the model's streams run parallel regions over several threads (gallery/streams.py).

Why: a parallel region waits for its slowest thread, so a helper that takes a core in the
middle of one stalls the whole region until the helper's time slice ends. At a lower
priority the helpers run in the gaps between the model's operations instead. Streams of one
thread each (the default on up to 4 cores) have no such barriers, and there the workers
keep the model's priority: niced, they fell behind two busy streams (the main thread waited
1.08 s for batches in a 6.6 s run of 2,000 Fashion-MNIST images, 0.28 s at equal priority).
Linux only (there a thread's priority is its own); elsewhere nothing changes.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading

NICE = 10  # added to the helpers' nice value


def lower_priority(*_: object) -> None:
    """Lower the calling thread's scheduling priority by NICE (a DataLoader
    `worker_init_fn`)."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):  # not permitted, or a kernel without per-thread nice
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + NICE))
