"""The streaming gallery build: decode in DataLoader workers -> on one of a few streams,
explain a batch, render and write its PNGs -> journal its rows (gallery/streams.py).

Memory stays flat whatever the count: the loader prefetches a bounded number of batches,
the streams keep at most a few in flight, and rows go to the journal as they finish. The
page is rebuilt from the journals every few seconds, and with the manifest and contact
sheet at the end or on Ctrl-C/SIGTERM, so an interrupted run leaves a valid gallery of
what it finished, and `--resume` skips that.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from tqdm import tqdm

from explain.atomic import check_writable
from explain.domain import describe
from explain.errors import ExplainError
from explain.explanation import Explanation
from explain.paths import display
from explain.pipeline import explain_batch
from explain.registry import Model

from .contact import write_contact_sheet
from .dataset import Decoded, loader
from .inputs import Item, class_index
from .manifest import Journal, finished_ids, read_rows, write_manifest
from .outdir import Lock, claim
from .page import write_page
from .shard import Group
from .streams import Streams, default_streams
from .writer import Style, render_rows

log = logging.getLogger(__name__)


@dataclass
class Options:
    methods: list[str]
    style: Style
    title: str = "explain gallery"
    layer: str | None = None
    batch_size: int = 32
    workers: int = 1
    streams: int | None = None  # batches explained at once (gallery/streams.py); None: default
    resume: bool = False
    refresh_s: float = 2.0    # how often the page is rebuilt while the run goes
    progress: bool = True
    method_options: dict = field(default_factory=dict)  # to every method (Score-CAM's channels)


@dataclass
class Summary:
    out: Path
    rows: int = 0        # in the gallery now
    new: int = 0         # written by this run (all ranks)
    skipped: int = 0     # finished before (--resume)
    errors: int = 0      # rows with an error marker
    seconds: float = 0.0
    outside: int = 0     # rows outside the model's domain
    domain: str = ""     # the model's domain (explain.domain.describe)


def settings_for(model: Model, opts: Options) -> dict:
    """What the page and a later --resume need to know about this gallery."""
    return {"title": opts.title, "model": model.name, "methods": opts.methods,
            "classes": model.classes, "layer": opts.layer, "size": opts.style.size,
            "thumb": opts.style.thumb, "alpha": opts.style.alpha, "cmap": opts.style.cmap,
            "input": model.input.to_dict(), "domain": describe(model),
            "captions": {m: model.caption(m) for m in opts.methods if model.caption(m)},
            "method_options": opts.method_options}


def _base_row(item: Item, classes: list[str]) -> dict:
    """A row's text is printable (names that are not UTF-8 with backslash escapes)."""
    return {"id": item.id, "index": item.index, "name": display(item.name),
            "path": display(item.path.resolve()),
            "truth": None if item.truth is None else display(item.truth),
            "truth_index": class_index(item.truth, classes)}


def error_row(item: Item, message: str, classes: list[str]) -> dict:
    return {**_base_row(item, classes), "error": message, "pred": None, "label": None,
            "prob": None, "correct": None, "files": {}, "thumbs": {}}


def prediction_rows(items: list[Item], expl: Explanation, model: Model, outside: list[list[str]],
                    k: int = 3) -> list[dict]:
    """One row per image: the class every map explains (top-1), its probability, top-k, and
    why the image is outside the model's domain (explain.domain; [] when it fits)."""
    probs, idx = (t.cpu() for t in expl.topk(k))
    rows = []
    for item, p, i, why in zip(items, probs.tolist(), idx.tolist(), outside):
        row = _base_row(item, model.classes)
        truth = row["truth_index"]
        rows.append({**row, "error": None, "pred": i[0], "label": model.class_name(i[0]),
                     "prob": round(p[0], 6), "correct": None if truth is None else i[0] == truth,
                     "top": [[model.class_name(c), round(q, 6)] for c, q in zip(i, p)],
                     "outside": why})
    return rows


class Publisher:
    """Rebuilds the gallery from all shards' journals (rank 0 only). While the run goes, the
    page alone: as soon as the first rows are in, then while new rows come at most every
    `every_s` seconds, and rarer when the gallery is large, so that this takes at most
    `budget` of the time. At the end (or on an interrupt), the manifest and contact sheet too."""

    def __init__(self, out: Path, settings: dict, every_s: float, enabled: bool,
                 budget: float = 0.01):
        self.out, self.settings, self.every_s, self.enabled = out, settings, every_s, enabled
        self.budget, self.cost = budget, 0.0
        self.last, self.seen = float("-inf"), 0

    def maybe(self, journaled: int) -> None:
        wait = max(self.every_s, self.cost / self.budget)
        if journaled > self.seen and time.monotonic() - self.last >= wait:
            self.seen = journaled
            self.publish()

    def publish(self, final: bool = False) -> list[dict]:
        if not self.enabled:
            return []
        start = time.monotonic()
        rows = read_rows(self.out)
        write_page(self.out, self.settings, rows)
        if final:
            write_manifest(self.out, self.settings, rows)
            write_contact_sheet(self.out, self.settings, rows)
        self.last = time.monotonic()
        self.cost = self.last - start
        return rows


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """torchrun and job schedulers stop with SIGTERM: finish up as for Ctrl-C."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stream(model: Model, todo: list[Item], out: Path, opts: Options, group: Group,
            publisher: Publisher) -> int:
    """This rank's share, batch by batch; returns how many rows it journaled."""
    journal = Journal(out, group.rank)
    streams = Streams(model, opts.streams or default_streams(model))  # threads start on submit
    batches = iter(loader(todo, model.input, opts.batch_size, opts.workers,  # fork before threads
                          parts=streams.count, yield_to_model=streams.parallel_regions))
    desc = "gallery" if group.world == 1 else f"gallery rank {group.rank}/{group.world}"
    bar = tqdm(total=len(todo), unit="img", desc=desc, disable=not opts.progress, leave=False,
               dynamic_ncols=True, position=group.rank)
    written = 0

    def record(rows: list[dict]) -> None:
        nonlocal written
        now = time.time()
        journal.append({**r, "time": now, "rank": group.rank} for r in rows)
        written += len(rows)
        bar.update(len(rows))

    def job(batch: Decoded, turn: int) -> Callable[[Model], list[dict]]:
        def run(replica: Model) -> list[dict]:
            expl = explain_batch(replica, batch.x, opts.methods, opts.layer, **opts.method_options)
            rows = prediction_rows(batch.items, next(iter(expl.values())), replica, batch.outside)
            return render_rows(out, opts.style, rows, batch.views,
                               {m: e.cpu() for m, e in expl.items()}, turn)
        return run

    with streams.sharing_threads():
        try:
            for turn, batch in enumerate(batches):
                failed = [error_row(item, msg, model.classes) for item, msg in batch.failed]
                for row in failed:
                    log.error(row["error"])
                record(failed)
                if batch.items:
                    record(streams.submit(job(batch, turn)))
                publisher.maybe(written)
        finally:
            try:
                record(streams.close())
            finally:
                journal.close()
                bar.close()
    return written


def _claim(out: Path, items: list[Item], settings: dict, resume: bool, group: Group
           ) -> tuple[Lock | None, list[Item], int]:
    """Rank 0 locks `out`, checks it may write there and what is finished; every rank
    learns the outcome, so all stop or all go on together."""
    lock, decision = None, None
    if group.leader:
        try:
            check_writable(out)
            lock = Lock(out)
            claim(out, settings, resume)
            done = finished_ids(out, read_rows(out)) if resume else set()
            decision = {"done": sorted(done & {it.id for it in items})}
        except ExplainError as e:
            decision = {"error": e}  # pickled with its param for the other ranks
            if lock:
                lock.release()
                lock = None
    decision = group.share(decision)
    if "error" in decision:
        raise decision["error"]
    done = set(decision["done"])
    return lock, group.part([it for it in items if it.id not in done]), len(done)


def build_gallery(model: Model, items: list[Item], out: str | Path, opts: Options,
                  group: Group = Group()) -> Summary:
    """Build (or, with opts.resume, complete) the gallery of `items` in `out`."""
    out = Path(out)
    start = time.perf_counter()
    settings = settings_for(model, opts)
    lock, todo, skipped = _claim(out, items, settings, opts.resume, group)
    publisher = Publisher(out, settings, opts.refresh_s, group.leader)
    try:
        with sigterm_as_interrupt():
            try:
                new = _stream(model, todo, out, opts, group, publisher)
            except BaseException:  # Ctrl-C, SIGTERM, a full disk, a killed loader worker
                with contextlib.suppress(Exception):
                    publisher.publish(final=True)  # a valid gallery of what finished
                raise
            group.barrier()
            new = group.total(new)
            rows = publisher.publish(final=True)
    finally:
        if lock:
            lock.release()
    summary = None
    if group.leader:
        summary = Summary(out, len(rows), new, skipped, sum(1 for r in rows if r.get("error")),
                          time.perf_counter() - start, sum(1 for r in rows if r.get("outside")),
                          settings["domain"])
    return group.share(summary)
