"""Process-wide settings the command line applies before any work.

glibc's malloc hands blocks above its mmap threshold (128 KiB at start, adapting upwards only
after frees) straight to the kernel and gives them back on free, and trims the heap's top
beyond 128 KiB. A CPU forward pass allocates and frees activations of megabytes every layer,
so each batch pays for fresh zero-filled pages: measured on the Non-local ResNet-20 (batch
256, 2 threads), a forward with autograd recording took 1.19-1.40x a plain one with glibc's
defaults and 1.04-1.05x with the settings below (benchmarks/native_speed.py). Keeping freed
memory in the process for reuse is what PyTorch's own GPU caching allocator does.
"""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap, and stay for reuse
TRIM_THRESHOLD = 2**31 - 1  # never give the heap's top back to the kernel mid-run


def tune_allocator() -> bool:
    """Keep freed tensor memory in the process (glibc only; elsewhere a no-op, False).
    A user's MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ in the environment wins."""
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError, TypeError):  # not glibc: musl, macOS, Windows
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
