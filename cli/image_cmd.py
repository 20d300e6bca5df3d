"""`explain IMAGE ...`: top-k predictions and an overlay per method for each image."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (DEVICE_HELP, add_model_args, device_arg, method_options, point_arg,
                     positive_int, to_json)

HELP = "explain images: print top-k classes and write an overlay per method"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "image", help=HELP + " (the default command: `explain photo.jpg` = `explain image photo.jpg`)",
        description=HELP + ". Writes OUT/<image>_<method>.png, the map over the whole photo "
                           "(the part the model did not see washed out and outlined) with a "
                           "title, a caption for native maps and a colour legend, and "
                           "OUT/<image>_panel.png (the photo | one map per method, in rows).")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or directories")
    add_model_args(p)
    p.add_argument("--target", type=int, help="class index to explain (default: top-1)")
    p.add_argument("--query", type=point_arg, metavar="X,Y",
                   help="attention methods: the query position, in pixels of the original "
                        "image (default: the CLS token where the model has one, else the "
                        "image centre)")
    p.add_argument("--topk", type=positive_int, default=5, help="classes to print per image")
    p.add_argument("--out", default="explain-out", help="output folder")
    p.add_argument("--device", type=device_arg, default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=positive_int, default=8, help="images a batch")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    p.add_argument("--cmap", default="jet", help="matplotlib colormap")
    p.add_argument("--contour", action="store_true", help="draw the 50%% iso-line")
    p.add_argument("--view", choices=["full", "crop"], default="full",
                   help="full: the map over the whole photo at its own resolution; crop: "
                        "over the square the model saw")
    p.add_argument("--columns", type=positive_int, default=4, help="panel tiles a row")
    p.add_argument("--save-maps", action="store_true",
                   help="also write each map (input resolution, float32) as .npy")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from explain.images import find_images
    from explain.jobs.images import ImageOptions, check, explain_images
    from explain.methods import select
    from explain.registry import create_model
    paths = find_images(args.images)
    model = create_model(args.model, args.weights, args.device)
    methods = select(model, args.methods)
    opts = ImageOptions(Path(args.out), args.layer, args.target, args.topk, args.batch_size,
                        args.alpha, args.cmap, args.contour, args.save_maps, args.query,
                        args.view, args.columns, method_options(args))
    check(model, methods, opts)  # before any work
    failed = 0
    for record in explain_images(model, paths, methods, opts):
        if "error" in record:
            failed += 1
            print(f"error: {record['error']}", file=sys.stderr)
        for warning in record.get("warnings", []):
            print(f"warning: {record['image']}: {warning}", file=sys.stderr, flush=True)
        if args.json:
            print(to_json(record), flush=True)
        elif "error" not in record:
            preds = ", ".join(f"{t['name']} {t['probability']:.1%}" for t in record["topk"])
            print(f"{record['image']}: {preds}")
            print(f"  -> {record['panel']}")
    if failed:
        print(f"{failed} of {len(paths)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0
