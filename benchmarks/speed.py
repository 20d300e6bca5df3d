"""Map extraction time as a multiple of a plain forward pass of the same model on the same
batch, measured side by side in one process (BENCHMARKS.md, "Speed").

Rows: our Grad-CAM and native maps, and Grad-CAM from pytorch-grad-cam, torchcam and captum
(`pip install -e '.[bench]'`). Calls are interleaved round-robin and each figure is the median
over repetitions after warm-up, so machine noise hits every column alike.

    python benchmarks/speed.py [--reps 15] [--quick]

Writes benchmarks/results/speed.json and speed.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.methods import Explainer  # noqa: E402
from explain.models.abn import ABNResNet  # noqa: E402
from explain.registry import Model, create_model  # noqa: E402
from explain.runtime import tune_allocator  # noqa: E402
from explain.preprocess import IMAGENET  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def peers(net: nn.Module, layer: str) -> dict[str, Callable[[torch.Tensor], object]]:
    """Grad-CAM as the peer toolkits compute it (each installed only for the benchmark)."""
    out: dict[str, Callable] = {}
    module = dict(net.named_modules())[layer]
    try:
        from pytorch_grad_cam import GradCAM as PGC
        pgc = PGC(model=net, target_layers=[module])
        out["pytorch-grad-cam"] = lambda x: pgc(input_tensor=x, targets=None)
    except ImportError:
        pass
    try:
        from torchcam.methods import GradCAM as TC

        def torchcam_call(x):
            with TC(net, target_layer=layer) as ex:
                scores = net(x)
                return ex(scores.argmax(1).tolist(), scores)
        out["torchcam"] = torchcam_call
    except ImportError:
        pass
    try:
        from captum.attr import LayerGradCam

        def captum_call(x):
            with torch.no_grad():
                t = net(x).argmax(1)
            return LayerGradCam(net, module).attribute(x, target=t)
        out["captum LayerGradCam"] = captum_call
    except ImportError:
        pass
    return out


def time_round_robin(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 2
                     ) -> dict[str, float]:
    """Median seconds per call of each fn, calls interleaved so noise is shared."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(warmup + reps):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def case(label: str, model: Model, x: torch.Tensor, native: list[str], reps: int,
         with_peers: bool = True) -> list[dict]:
    net = model.net.eval()
    layer = model.cam_layer or "layer4"

    def plain():
        with torch.no_grad():
            net(x)
    fns: dict[str, Callable] = {"forward": plain}
    fns["explain Grad-CAM"] = lambda: Explainer(model, "gradcam", layer=layer)(x)
    for m in native:
        fns[f"explain native {m}"] = lambda m=m: Explainer(model, m)(x)
    if with_peers:
        for name, fn in peers(net, layer).items():
            fns[name] = lambda fn=fn: fn(x)
    med = time_round_robin(fns, reps)
    base = med["forward"]
    return [{"model": label, "batch": tuple(x.shape), "method": k, "ms": round(v * 1e3, 2),
             "ratio": round(v / base, 3)} for k, v in med.items()]


def measure(reps: int = 15, quick: bool = False) -> list[dict]:
    torch.manual_seed(0)
    rows: list[dict] = []
    x224 = torch.randn(8, 3, 224, 224)
    r50 = torchvision.models.resnet50(weights=None).eval()
    rows += case("ResNet-50 (random weights)", Model("resnet50", r50, IMAGENET, [], cam_layer="layer4"),
                 x224, [], reps)
    if not quick:
        rows += case("EfficientNet-Lite0 (ImageNet)", create_model("efficientnet_lite0"), x224, [], reps)
        abn50 = ABNResNet(depths=(3, 4, 6, 3), widths=(64, 128, 256, 512), block="bottleneck",
                          num_classes=1000, stem="imagenet").eval()
        rows += case("ABN-ResNet-50 (random weights)",
                     Model("abn_resnet50", abn50, IMAGENET, [], {"abn": "att_map"}, "layer4"),
                     x224, ["abn"], reps)
    for name in ("abn_fmnist", "resnet"):
        try:
            m = create_model(name)
        except Exception:  # noqa: BLE001 - zoo checkpoint not trained yet
            continue
        xs = torch.randn(256, 1, *m.input.size)
        rows += case(f"{m.name} (Fashion-MNIST)", m, xs, sorted(m.native), reps)
    return rows


def to_markdown(rows: list[dict]) -> str:
    lines = ["| model | batch | method | ms / batch | x forward |", "|---|---|---|---:|---:|"]
    for r in rows:
        b = "x".join(map(str, r["batch"]))
        lines.append(f"| {r['model']} | {b} | {r['method']} | {r['ms']} | {r['ratio']:.2f} |")
    return "\n".join(lines)


def malloc_settings(glibc: bool = False) -> str:
    """Apply the command line's malloc settings (explain.runtime) unless `glibc`; the words
    the results files use for what this run ran with."""
    return ("the command line's" if not glibc and tune_allocator() else "glibc's") + \
        " malloc settings"


def cli(doc: str, measure_fn: Callable[[int, bool], list[dict]], stem: str, reps: int,
        quick_help: str, medians: Callable[[int], str] = lambda r: f"median of {r}") -> None:
    """The speed benchmarks' command line (--reps, --quick, --threads); writes
    benchmarks/results/<stem>.json and <stem>.md, naming the command that wrote them."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=reps)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--glibc-malloc", action="store_true",
                    help="keep glibc's default malloc settings instead of the command line's "
                         "(explain.runtime.tune_allocator)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    malloc = malloc_settings(args.glibc_malloc)
    rows = measure_fn(args.reps, args.quick)
    env = {"torch": torch.__version__, "malloc": malloc,
           "cpu": platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "reps": args.reps}
    RESULTS.mkdir(parents=True, exist_ok=True)
    from explain.atomic import atomic_write_text
    atomic_write_text(RESULTS / f"{stem}.json", json.dumps({"env": env, "rows": rows}, indent=2))
    command = " ".join(["python", f"benchmarks/{stem}.py", *sys.argv[1:]])
    md = (f"Written by `{command}` "
          f"(torch {env['torch']}, {env['threads']} CPU threads, "
          f"{malloc}; {medians(args.reps)}, "
          "ratios to a plain no-grad forward in the same run).\n\n" + to_markdown(rows) + "\n")
    atomic_write_text(RESULTS / f"{stem}.md", md)
    print(md)


def main() -> None:
    cli(__doc__, measure, "speed", 15, "ResNet-50 and the zoo only")


if __name__ == "__main__":
    main()
