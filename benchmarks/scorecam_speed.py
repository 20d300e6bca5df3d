"""Score-CAM on EfficientNet-Lite0 (224 px photos): explain's fast default (the channels of
highest mean activation mask the input) against the method as published (every one of the
1,280 channels), and against pytorch-grad-cam's and torchcam's ScoreCAM (`pip install -e
'.[bench]'`), on the same image in the same run, one after the other per image.

Goals (issue 15): the default's map correlates >= 0.95 (Spearman, mean over images) with
the full method's, and costs <= 10 s per image on this machine.

    python benchmarks/scorecam_speed.py [--threads 2] [--peers 1] [--channels 64] [IMAGE ...]

Every call is timed once (a full Score-CAM takes minutes); the peers run on the first
`--peers` images only, with the full method's batch size (64 masked inputs a forward).
Writes benchmarks/results/scorecam_speed.json and .md, with the load average of the run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from record import ROOT, under_load, write  # noqa: E402  (benchmarks/record.py)

sys.path.insert(0, str(ROOT))
from explain.images import load_image  # noqa: E402
from explain.methods import Explainer  # noqa: E402
from explain.methods.cam import ScoreCAM  # noqa: E402
from explain.metrics.sanity import rank_correlation  # noqa: E402
from explain.registry import create_model  # noqa: E402

BATCH = 64
GOAL_S, GOAL_RHO = 10.0, 0.95


def default_images() -> list[Path]:
    photos = sorted((ROOT / "explain" / "samples").glob("*.jpg"))
    try:
        import skimage
        data = Path(skimage.__file__).parent / "data"
        photos += [p for p in (data / "motorcycle_left.png",) if p.is_file()]
    except ImportError:
        pass
    return photos


def peers(net: torch.nn.Module, layer: str) -> dict[str, Callable[[torch.Tensor, int], torch.Tensor]]:
    """ScoreCAM as the peer toolkits compute it: the map (h, w) for class `target`."""
    out: dict[str, Callable] = {}
    module = dict(net.named_modules())[layer]
    try:
        from pytorch_grad_cam import ScoreCAM as PGC
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        def pgc_call(x, target):
            cam = PGC(model=net, target_layers=[module])
            cam.batch_size = BATCH
            return torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0])
        out["pytorch-grad-cam ScoreCAM"] = pgc_call
    except ImportError:
        pass
    try:
        from torchcam.methods import ScoreCAM as TC

        def torchcam_call(x, target):
            with TC(net, target_layer=layer, batch_size=BATCH) as ex, torch.no_grad():
                return ex(target, net(x))[0][0]
        out["torchcam ScoreCAM"] = torchcam_call
    except ImportError:
        pass
    return out


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def measure(images: list[Path], channels: int, n_peers: int) -> list[dict]:
    model = create_model("efficientnet_lite0")
    net = model.net.eval()
    rows = []
    for n, path in enumerate(images):
        x, _, _ = model.input(load_image(path))
        x = x[None]
        fast, t_fast = timed(lambda: Explainer(model, "scorecam", channels=channels)(x))
        full, t_full = timed(lambda: Explainer(model, "scorecam", channels=0)(x))
        target = int(full.targets[0])
        row = {"image": path.name, "class": model.class_name(target),
               "default_s": round(t_fast, 2), "full_s": round(t_full, 2),
               "spearman_default_vs_full": round(float(rank_correlation(full.maps, fast.maps)[0]), 4)}
        if n < n_peers:
            for label, fn in peers(net, full.layer).items():
                m, t = timed(lambda: fn(x, target))
                row[f"{label} s"] = round(t, 2)
                row[f"{label} spearman vs full"] = round(
                    float(rank_correlation(full.maps, m.float()[None, None])[0]), 4)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def to_markdown(rows: list[dict], channels: int) -> str:
    peer_keys = sorted({k for r in rows for k in r if k.endswith(" s") and "ScoreCAM" in k})
    head = ["image", "class", f"default ({channels} channels) s", "full s", "x faster",
            "Spearman default vs full"] + peer_keys
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["image"], r["class"], f"{r['default_s']:.1f}", f"{r['full_s']:.1f}",
                 f"{r['full_s'] / r['default_s']:.1f}", f"{r['spearman_default_vs_full']:.3f}"]
        cells += [f"{r[k]:.1f}" if k in r else "-" for k in peer_keys]
        lines.append("| " + " | ".join(cells) + " |")
    rho = statistics.mean(r["spearman_default_vs_full"] for r in rows)
    worst = max(r["default_s"] for r in rows)
    lines += ["", f"Mean Spearman default vs full: {rho:.3f} (goal >= {GOAL_RHO}: "
              f"{'met' if rho >= GOAL_RHO else 'MISSED'}); default per image: median "
              f"{statistics.median(r['default_s'] for r in rows):.1f} s, max {worst:.1f} s "
              f"(goal <= {GOAL_S:g} s: {'met' if worst <= GOAL_S else 'MISSED'})."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", type=Path, help="photos (default: the bundled ones "
                    "and scikit-image's motorcycle)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--channels", type=int, default=ScoreCAM.CHANNELS)
    ap.add_argument("--peers", type=int, default=1, help="run the peers on the first N images")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows, load = under_load(lambda: measure(args.images or default_images(), args.channels,
                                            args.peers))
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "load_average_1_5_15": load, "channels": args.channels, "batch": BATCH}
    md = write("scorecam_speed", env, rows, f"torch {env['torch']}, {env['threads']} CPU "
               f"threads; EfficientNet-Lite0, 224 px, one image a call, each call timed once, "
               f"masked inputs {BATCH} a forward", to_markdown(rows, args.channels))
    print(md)


if __name__ == "__main__":
    main()
