"""Gallery throughput and memory: `explain gallery` end to end against the bare model + maps.

On N Fashion-MNIST test images written as PNGs to a temporary ImageFolder, with 3 methods:

- bare: the images decoded beforehand (not timed), then `explain_batch` over all of them
  on the main thread (torch's intra-op threads);
- bare, streams: the same on the gallery's throughput streams (gallery/streams.py), so that
  gallery / this is what everything around the model (decoding, rendering, writing) costs;
- gallery: `build_gallery` from the PNG files to the written index.html, manifest and
  contact sheet (decoding in DataLoader workers, explaining and PNG writing on the streams).

Each measurement runs in a fresh process (so peak RSS is its own), bare and gallery runs
alternating; the share is the median over repetitions of gallery / bare, each pair measured
back to back (these machines are shared and noisy; the load average is recorded with each
run). CPU seconds an image (user + system, loader workers included) are reported too: they
do not depend on what else the machine is doing. Peak RSS is compared for galleries of the
small and the full count.
Uses the embedded `abn` model when it is there, else a small untrained ABN-ResNet-20.

Then the page itself: index.html with 10,000 rows (synthetic, all showing one tile) opened
from disk in headless Chromium, timing the first paint of rows, a text filter and a sort.
Writes benchmarks/results/gallery_throughput.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.atomic import atomic_write_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "gallery_throughput"


def write_images(folder: Path, n: int) -> None:
    """The first `n` Fashion-MNIST test images as PNGs in class folders."""
    import re

    from PIL import Image

    from explain.datasets import FMNIST_CLASSES, fashion_mnist
    data = fashion_mnist("test")
    for i in range(n):
        cls = re.sub(r"[^a-z0-9]+", "_", FMNIST_CLASSES[data.labels[i]].lower())
        (folder / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.images[i]).save(folder / cls / f"{i:05d}.png")


def load_model(spec: str):
    """`spec` is a registry name, or `tiny:DIR` for the fallback network (built once)."""
    import torch

    from explain.checkpoint import save_checkpoint
    from explain.datasets import FMNIST_CLASSES, FMNIST_MEAN, FMNIST_STD
    from explain.models import build, get_arch
    from explain.preprocess import InputSpec
    from explain.registry import create_model
    if not spec.startswith("tiny:"):
        return create_model(spec)
    folder = Path(spec[5:])
    if not (folder / "card.json").exists():
        torch.manual_seed(0)
        kw = get_arch("abn_resnet").kwargs(10, 1, 28)
        spec_ = InputSpec(size=(28, 28), channels=1, mean=(FMNIST_MEAN,), std=(FMNIST_STD,))
        save_checkpoint(folder, build("abn_resnet", kw),
                        {"name": "abn_resnet20_untrained", "arch": "abn_resnet",
                         "arch_kwargs": kw, "classes": FMNIST_CLASSES, "input": spec_.to_dict(),
                         "data": "none (benchmark fallback)", "seed": 0})
    return create_model(str(folder))


def peak_rss_mb() -> dict:
    """Peak resident memory of this process, and of its largest finished child (loader workers)."""
    to_mb = 1 / 1024  # ru_maxrss is in KiB on Linux
    return {"main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * to_mb,
            "workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * to_mb}


def cpu_seconds() -> float:
    """User + system time of this process and its finished children (loader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def child(args: argparse.Namespace) -> dict:
    """One measurement, in this (fresh) process."""
    import torch

    from explain.images import load_image
    from explain.pipeline import explain_batch
    from explain.gallery.build import Options, build_gallery
    from explain.gallery.inputs import collect
    from explain.gallery.streams import Streams, default_streams
    from explain.gallery.writer import Style
    from explain.runtime import tune_allocator
    tune_allocator()  # as the command line does
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    methods = args.methods.split(",")
    items = collect(args.images, args.n)
    if args.child == "bare":
        x = torch.stack([model.input(load_image(it.path))[0] for it in items])
        explain_batch(model, x[:args.batch_size], methods)  # warm-up
        cpu, start = cpu_seconds(), time.perf_counter()
        for i in range(0, len(x), args.batch_size):
            expl = explain_batch(model, x[i:i + args.batch_size], methods)
            [e.maps.cpu() for e in expl.values()]
        seconds = time.perf_counter() - start
    elif args.child == "bare-streams":
        x = torch.stack([model.input(load_image(it.path))[0] for it in items])

        def job(i: int):
            def run(replica):
                expl = explain_batch(replica, x[i:i + args.batch_size], methods)
                return [e.maps.cpu() for e in expl.values()]
            return run
        streams = Streams(model, default_streams(model))
        with streams.sharing_threads():
            for i in range(0, streams.count * args.batch_size, args.batch_size):  # warm-up
                streams.submit(job(i))
            streams.wait()
            cpu, start = cpu_seconds(), time.perf_counter()
            for i in range(0, len(x), args.batch_size):
                streams.submit(job(i))
            streams.close()
            seconds = time.perf_counter() - start
    else:
        opts = Options(methods=methods, style=Style(max(model.input.size)),
                       batch_size=args.batch_size, workers=args.workers, progress=False,
                       title="benchmark")
        scratch = Path(args.scratch)
        build_gallery(model, items[:args.batch_size], scratch / "warmup", opts)  # warm-up
        cpu, start = cpu_seconds(), time.perf_counter()
        summary = build_gallery(model, items, scratch / "gallery", opts)
        seconds = time.perf_counter() - start
        assert summary.rows == len(items) and not summary.errors, summary
    return {"kind": args.child, "n": len(items), "seconds": seconds,
            "images_per_s": len(items) / seconds, "rss_mb": peak_rss_mb(),
            "cpu_ms_per_image": (cpu_seconds() - cpu) / len(items) * 1000,
            "threads": torch.get_num_threads(), "streams": default_streams(model)}


def measure(kind: str, n: int, args: argparse.Namespace, images: Path, model: str,
            work: Path) -> dict:
    """One run in a fresh process. Its galleries stay in `work` until the whole benchmark
    is done: on a file system that skips recently freed inodes one by one (ext4 without a
    journal, as on the machines these figures come from: `recently_deleted`, up to 5 min),
    deleting one run's thousands of tiles would slow the next run's file creation, an
    effect of the benchmark, not of the gallery."""
    load = os.getloadavg()[0]
    scratch = tempfile.mkdtemp(prefix=f"{kind}-", dir=work)
    cmd = [sys.executable, __file__, "--child", kind, "--n", str(n), "--images", str(images),
           "--model", model, "--methods", args.methods, "--batch-size", str(args.batch_size),
           "--workers", str(args.workers), "--scratch", scratch,
           "--threads", str(args.threads or 0)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{kind} run failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_before"], result["load_after"] = load, os.getloadavg()[0]
    print(f"  {kind:8s} n={n:5d}  {result['images_per_s']:7.1f} img/s  "
          f"{result['cpu_ms_per_image']:5.2f} CPU ms/img  peak RSS {result['rss_mb']['main']:.0f} MB"
          f"  (load {load:.1f} -> {result['load_after']:.1f})", flush=True)
    return result


def page_timing(work: Path, n: int) -> dict | None:
    """Milliseconds to show the first rows of an n-row page, to filter it and to sort it."""
    import numpy as np

    from explain.datasets import FMNIST_CLASSES
    from explain.render import save_png
    from explain.gallery.page import write_page
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        return None
    rng = np.random.default_rng(0)
    save_png(work / "tile.png", rng.integers(0, 255, (28, 28, 3), dtype=np.uint8))
    files = {k: "tile.png" for k in ("input", "abn", "gradcam", "gradcampp")}
    rows = []
    for i in range(n):
        pred, truth = rng.integers(10, size=2)
        rows.append({"id": f"r{i}", "index": i, "name": f"{FMNIST_CLASSES[truth]}/{i:05d}.png",
                     "path": f"/data/{i:05d}.png", "truth": FMNIST_CLASSES[truth],
                     "pred": int(pred), "label": FMNIST_CLASSES[pred], "prob": float(rng.random()),
                     "correct": bool(pred == truth), "error": None,
                     "top": [[FMNIST_CLASSES[pred], 0.5]], "files": files, "thumbs": files})
    write_page(work, {"title": "timing", "model": "m", "methods": ["abn", "gradcam", "gradcampp"],
                      "classes": FMNIST_CLASSES}, rows)
    apply = """([id, value]) => { const t = performance.now(); const e = document.getElementById(id);
        e.value = value; e.dispatchEvent(new Event('input')); document.body.offsetHeight;
        return performance.now() - t; }"""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((work / "index.html").as_uri())
        page.wait_for_selector("#rows tr")
        loaded = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
        result = {"rows": n, "dom_rows": page.eval_on_selector_all("#rows tr", "t => t.length"),
                  "load_ms": loaded, "filter_ms": page.evaluate(apply, ["q", "coat"]),
                  "clear_ms": page.evaluate(apply, ["q", ""]),
                  "sort_ms": page.evaluate(apply, ["sort", "conf-asc"])}
        browser.close()
    return result


def report(doc: dict) -> str:
    s = doc["summary"]
    lines = [
        "# Gallery throughput",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {doc['machine']}; model `{doc['model']}`; methods {doc['methods']}; "
        f"batch {doc['batch_size']}; {doc['threads']} torch thread(s); {doc['workers']} loader "
        f"worker(s); {doc['reps']} "
        "repetitions, medians.",
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        f"| bare model + maps, {doc['images']} images | {s['bare_images_per_s']:.1f} img/s | |",
        f"| bare model + maps on the gallery's {doc['streams']} streams | "
        f"{s['bare_streams_images_per_s']:.1f} img/s | |",
        f"| gallery end to end, {doc['images']} images | {s['gallery_images_per_s']:.1f} img/s | |",
        f"| gallery / bare (median of back-to-back pairs) | {s['share']:.1%} | >= 90% |",
        f"| gallery / bare on the same streams | {s['share_streams']:.1%} | |",
        f"| CPU per image: bare / gallery | {s['bare_cpu_ms']:.2f} / {s['gallery_cpu_ms']:.2f} ms "
        f"({s['cpu_share']:.1%} of the gallery's CPU is the model + maps) | |",
        f"| peak RSS, {doc['small']} images | {s['rss_small_mb']:.0f} MB | |",
        f"| peak RSS, {doc['images']} images | {s['rss_full_mb']:.0f} MB | |",
        f"| RSS growth {doc['small']} -> {doc['images']} | {s['rss_growth']:+.1%} | within 10% |",
        "",
        "Per repetition (bare, bare on streams, gallery img/s; load average): " + ", ".join(
            f"({b['images_per_s']:.0f}, {t['images_per_s']:.0f}, {g['images_per_s']:.0f}; "
            f"{b['load_before']:.1f})" for b, t, g in zip(doc["runs"]["bare"],
                                                          doc["runs"]["bare_streams"],
                                                          doc["runs"]["gallery"])),
        "",
    ]
    t = doc.get("page")
    if t:
        lines += [f"Page with {t['rows']:,} rows in headless Chromium (file://): rows drawn "
                  f"{t['dom_rows']}, DOMContentLoaded {t['load_ms']:.0f} ms, text filter "
                  f"{t['filter_ms']:.0f} ms, clearing it {t['clear_ms']:.0f} ms, sort by "
                  f"confidence {t['sort_ms']:.0f} ms.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", default=None, help="(child) ImageFolder to read")
    p.add_argument("--n", type=int, default=2000, help="images in the full gallery")
    p.add_argument("--small", type=int, default=500, help="images in the small gallery (RSS)")
    p.add_argument("--methods", default="abn,gradcam,gradcampp")
    p.add_argument("--model", default="abn_fmnist", help="registry name; falls back to an untrained "
                                                  "ABN-ResNet-20 when it is not there")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own, "
                                               "which OMP_NUM_THREADS changes)")
    p.add_argument("--page-rows", type=int, default=10_000, help="rows of the timed page")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file stem")
    p.add_argument("--child", choices=["bare", "bare-streams", "gallery"], help=argparse.SUPPRESS)
    p.add_argument("--scratch", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0

    from explain.errors import ExplainError
    from explain.registry import create_model
    work = Path(tempfile.mkdtemp(prefix="gallery-bench-"))
    try:
        model = args.model
        try:
            create_model(model)
        except ExplainError as e:
            print(f"note: {e}; using an untrained ABN-ResNet-20 instead", file=sys.stderr)
            model = f"tiny:{work / 'abn_untrained'}"
        images = work / "fmnist"
        write_images(images, args.n)
        bare, bare_streams, full, small = [], [], [], []
        for rep in range(args.reps):
            print(f"repetition {rep + 1}/{args.reps}", flush=True)
            bare.append(measure("bare", args.n, args, images, model, work))
            bare_streams.append(measure("bare-streams", args.n, args, images, model, work))
            full.append(measure("gallery", args.n, args, images, model, work))
            small.append(measure("gallery", args.small, args, images, model, work))
        page = page_timing(work, args.page_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = lambda runs, f: statistics.median(f(r) for r in runs)  # noqa: E731
    rss_small = med(small, lambda r: r["rss_mb"]["main"])
    rss_full = med(full, lambda r: r["rss_mb"]["main"])
    summary = {
        "bare_images_per_s": med(bare, lambda r: r["images_per_s"]),
        "bare_streams_images_per_s": med(bare_streams, lambda r: r["images_per_s"]),
        "gallery_images_per_s": med(full, lambda r: r["images_per_s"]),
        "share_streams": statistics.median(g["images_per_s"] / b["images_per_s"]
                                           for b, g in zip(bare_streams, full)),
        "share": statistics.median(g["images_per_s"] / b["images_per_s"]
                                   for b, g in zip(bare, full)),
        "bare_cpu_ms": med(bare, lambda r: r["cpu_ms_per_image"]),
        "gallery_cpu_ms": med(full, lambda r: r["cpu_ms_per_image"]),
        "rss_small_mb": rss_small, "rss_full_mb": rss_full,
        "worker_rss_small_mb": med(small, lambda r: r["rss_mb"]["workers"]),
        "worker_rss_full_mb": med(full, lambda r: r["rss_mb"]["workers"]),
        "rss_growth": rss_full / rss_small - 1,
    }
    summary["cpu_share"] = summary["bare_cpu_ms"] / summary["gallery_cpu_ms"]
    doc = {"command": "python benchmarks/gallery_throughput.py " + " ".join(sys.argv[1:]),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                      f"load average {os.getloadavg()[0]:.1f} at the end",
           "model": model.split("/")[-1] if model.startswith("tiny:") else model,
           "methods": args.methods, "images": args.n, "small": args.small,
           "batch_size": args.batch_size, "workers": args.workers, "reps": args.reps,
           "threads": bare[0]["threads"], "streams": bare_streams[0]["streams"],
           "summary": summary, "page": page,
           "runs": {"bare": bare, "bare_streams": bare_streams, "gallery": full,
                    "gallery_small": small}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(doc, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), report(doc))
    print(report(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
