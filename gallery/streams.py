"""Throughput streams: several batches explained at once, each on its own replica of the model.

Why (benchmarks/results/gallery_throughput.md, Fashion-MNIST ABN on 2 cores): one stream
whose operations run on both cores, with rendering on helper threads beside it, reached 56%
of the bare model's throughput. Every operation of the model is a parallel region over all
cores, and a helper (or the kernel, creating files for it) that takes a core in the middle
of one stalls the region until it runs again, while its partner spins: the helpers' 1.2 s
of CPU cost the model 2.1 s. Streams with one intra-op thread each share no barrier, so
the work around the model (rendering, file writes, decoding) costs what it costs and no
more; and on small inputs they are faster than intra-op threads in any case (2 streams x 1
thread: 411-421 img/s against 1 x 2 threads: 374 img/s, same run), as CPU inference
servers' "throughput mode" finds.

Each stream runs a whole job -- explain, predict, render and write -- so rendering needs no
threads of its own. Results come back in submission order.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import logging
import queue
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, TypeVar

import torch

from explain.model import Model

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_STREAMS = 4  # beyond this, streams cost model replicas for little over intra-op threads


def default_streams(model: Model) -> int:
    """On CPU, one stream a torch thread, up to MAX_STREAMS (each gets an equal share of
    the threads); on a GPU two, so that one renders while the other runs the model."""
    if model.device.type == "cpu":
        return max(1, min(MAX_STREAMS, torch.get_num_threads()))
    return 2


def replicas(model: Model, count: int) -> list[Model]:
    """`model` and `count - 1` deep copies of it; only `model` where the network cannot be
    copied (a module holding something that refuses `copy.deepcopy`), with a warning."""
    out = [model]
    try:
        out += [dataclasses.replace(model, net=copy.deepcopy(model.net)) for _ in range(count - 1)]
    except Exception as e:  # whatever the module's own __deepcopy__ raises
        log.warning("model %r cannot be copied (%s: %s); the gallery runs one stream",
                    model.name, type(e).__name__, e)
        return [model]
    return out


class Streams:
    """`count` threads running jobs `job(replica)`; stream 0 uses `model` itself, the
    others deep copies (hooks are attached per call, so replicas never share one); `count`
    is 1 where the model cannot be copied. At most 2 jobs a stream are in flight: `submit`
    then waits for the oldest."""

    def __init__(self, model: Model, count: int):
        models = replicas(model, count)
        self.device = model.device
        self.count, self.depth = len(models), 2 * len(models)
        self.replicas: queue.SimpleQueue[Model] = queue.SimpleQueue()
        for m in models:
            self.replicas.put(m)
        self.pool = ThreadPoolExecutor(self.count, thread_name_prefix="gallery-stream")
        self.pending: collections.deque[Future] = collections.deque()

    def threads_each(self) -> int:
        """torch intra-op threads each stream runs with on CPU: an equal share."""
        return max(1, torch.get_num_threads() // self.count)

    @property
    def parallel_regions(self) -> bool:
        """Whether a stream's operations are parallel regions over several CPU threads
        (where a helper holding a core stalls them: gallery/background.py)."""
        return self.device.type == "cpu" and self.threads_each() > 1

    @contextlib.contextmanager
    def sharing_threads(self) -> Iterator[None]:
        """On CPU, give each stream its share of torch's intra-op threads for the duration
        (torch's setting is process-wide; the streams' threads, started on the first
        submit, take it up), and restore the setting after."""
        before = torch.get_num_threads()
        if self.device.type != "cpu" or self.count == 1:
            yield
            return
        torch.set_num_threads(self.threads_each())
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _run(self, job: Callable[[Model], list[T]]) -> list[T]:
        replica = self.replicas.get()  # one is free: as many replicas as threads
        try:
            return job(replica)
        finally:
            self.replicas.put(replica)

    def submit(self, job: Callable[[Model], list[T]]) -> list[T]:
        """Queue a job; returns the results of earlier jobs that have finished meanwhile, in
        submission order (waiting for the oldest when `depth` jobs are in flight)."""
        self.pending.append(self.pool.submit(self._run, job))
        done: list[T] = []
        while self.pending and (self.pending[0].done() or len(self.pending) > self.depth):
            done.extend(self.pending.popleft().result())
        return done

    def wait(self) -> list[T]:
        """Wait for every job in flight; their results."""
        done: list[T] = []
        while self.pending:
            done.extend(self.pending.popleft().result())
        return done

    def close(self) -> list[T]:
        """`wait`, then stop the threads. On an error (or Ctrl-C), jobs not started are
        cancelled and running ones finish before this returns."""
        try:
            return self.wait()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
