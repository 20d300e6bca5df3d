"""`explain IMAGE ...`: top-k predictions and an overlay per method for each image."""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from explain.atomic import atomic_open
from explain.errors import ExplainError
from explain.images import find_images
from explain.methods import method_class
from explain.pipeline import check_layer, explain_batch, prepare
from explain.registry import create_model
from explain.render import bars, overlay, panel, save_png, upscale_views

from .common import add_model_args, device_arg, positive_int

HELP = "explain images: print top-k classes and write an overlay per method"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "image", help=HELP + " (the default command: `explain photo.jpg` = `explain image photo.jpg`)",
        description=HELP + ". Writes OUT/<image>_<method>.png overlays and OUT/<image>_panel.png "
                           "(original | one overlay per method).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or directories")
    add_model_args(p)
    p.add_argument("--target", type=int, help="class index to explain (default: top-1)")
    p.add_argument("--topk", type=positive_int, default=5)
    p.add_argument("--out", default="explain-out", help="output folder")
    p.add_argument("--device", type=device_arg, default="cpu", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    p.add_argument("--cmap", default="jet", help="matplotlib colormap")
    p.add_argument("--contour", action="store_true", help="draw the 50%% iso-line")
    p.add_argument("--save-maps", action="store_true",
                   help="also write each map (input resolution, float32) as .npy")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.set_defaults(run=run)


def default_methods(native: dict) -> list[str]:
    return sorted(native) + ["gradcam"]


def parse_methods(value: str | None, native: dict) -> list[str]:
    if value is None:
        return default_methods(native)
    names = [m.strip() for m in value.split(",") if m.strip()]
    if not names:
        raise ExplainError("empty list", param="methods")
    return [method_class(n).name for n in names]


def unique_stems(paths: list[Path]) -> list[str]:
    """Output names: the file stem, made unique with a short path hash where stems collide."""
    stems = [p.stem for p in paths]
    return [s if stems.count(s) == 1 else f"{s}-{hashlib.sha1(str(p).encode()).hexdigest()[:6]}"
            for s, p in zip(stems, paths)]


def run(args: argparse.Namespace) -> int:
    paths = find_images(args.images)
    model = create_model(args.model, args.weights, args.device)
    methods = parse_methods(args.methods, model.native)
    for m in methods:  # fail on a method the model cannot give before any work
        if method_class(m).__mro__[1].__name__ == "NativeMap" and m not in model.native:
            raise ExplainError(f"model {model.name!r} has no native {m!r} map "
                               f"(native maps: {', '.join(model.native) or 'none'})", param="methods")
    check_layer(model, methods, args.layer)
    if args.target is not None and not 0 <= args.target < len(model.classes):
        raise ExplainError(f"{args.target} is not a class index of {model.name} "
                           f"(0..{len(model.classes) - 1})", param="target")
    out = Path(args.out)
    names = dict(zip(paths, unique_stems(paths)))
    failed = 0
    size = max(224, model.input.size[0])
    if model.input.size != (224, 224) and model.input.resize is None and not args.json:
        print(f"note: {model.name} takes {model.input.size[1]}x{model.input.size[0]} "
              f"{'grayscale' if model.input.channels == 1 else 'RGB'} input; images are resized "
              "to that, as its card says", file=sys.stderr)
    for start in range(0, len(paths), args.batch_size):
        batch, errors = prepare(model, paths[start:start + args.batch_size])
        for p, msg in errors:
            failed += 1
            print(f"error: {msg}", file=sys.stderr)
            if args.json:
                print(json.dumps({"image": str(p), "error": msg}), flush=True)
        if batch is None:
            continue
        expl = explain_batch(model, batch.x, methods, args.layer, args.target, all_maps=True)
        first = next(iter(expl.values()))
        probs, idx = first.topk(args.topk)
        views = upscale_views(batch.views, size)
        overlays = {m: bars(e.raw, size) if e.raw.ndim == 2 else  # SE: vectors, not maps
                    overlay(batch.views, e.maps, args.alpha, args.cmap, size, args.contour)
                    for m, e in expl.items()}
        for i, p in enumerate(batch.paths):
            stem = names[p]
            record = {"image": str(p), "topk": [
                {"index": int(c), "name": model.class_name(int(c)), "probability": round(float(q), 6)}
                for q, c in zip(probs[i], idx[i])], "methods": {}}
            for m, e in expl.items():
                file = out / f"{stem}_{m}.png"
                save_png(file, overlays[m][i])
                px, py = e.peaks()[i].tolist()
                entry = {"overlay": str(file), "target": int(e.targets[i]),
                         "peak": list(batch.geometry[i].to_original(px, py, model.input.size))}
                if args.save_maps:
                    npy = out / f"{stem}_{m}.npy"
                    with atomic_open(npy) as f:
                        np.save(f, e.maps[i, 0].cpu().numpy().astype(np.float32))
                    entry["map"] = str(npy)
                record["methods"][m] = entry
            top = record["topk"][0]
            header = f"{top['name']} ({top['probability']:.1%})"
            panel_file = out / f"{stem}_panel.png"
            save_png(panel_file, panel([views[i]] + [overlays[m][i] for m in expl],
                                       ["input"] + list(expl), header))
            record["panel"] = str(panel_file)
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                preds = ", ".join(f"{t['name']} {t['probability']:.1%}" for t in record["topk"])
                print(f"{p}: {preds}")
                print(f"  -> {panel_file}")
    if failed:
        print(f"{failed} of {len(paths)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0
