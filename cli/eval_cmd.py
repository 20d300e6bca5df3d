"""`explain eval`: faithfulness and localisation metrics of explanation methods."""
from __future__ import annotations

import argparse
import json
import sys

from explain.catalog import SYNTHETIC

from .common import DEVICE_HELP, add_model_args, count, device_arg, method_options, positive_int

HELP = ("measure explanation methods: deletion/insertion AUC, ROAD, pointing games, WR, "
        "sanity check")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help=HELP,
        description=HELP + ". Prints a table of method x metric (mean [95% bootstrap "
        "interval]) and writes OUT/metrics.json, OUT/metrics.csv, OUT/curves.png "
        "(deletion/insertion curves) and OUT/sanity.png (cascading randomisation). "
        "Localisation metrics need ground truth: the object box of cluttered-fmnist, the decoy "
        "patch of decoy-fmnist (WR), or --boxes for an image folder. Images a metric cannot "
        "score (no box, a box outside the image, a non-finite map) are skipped and counted.")
    add_model_args(p, required=True)
    p.add_argument("--data", required=True,
                   help=f"{', '.join(SYNTHETIC)} (test split), or an image folder "
                        "(class sub-folders give labels where they match the model's classes)")
    p.add_argument("--boxes", help="ground-truth boxes for an image folder: JSON "
                   "{\"IMAGE\": [x0, y0, x1, y1] or [[...], ...]} or CSV rows IMAGE,x0,y0,x1,y1; "
                   "paths relative to the folder, pixels of the original image")
    p.add_argument("--gt", choices=["box", "mask"], default="box",
                   help="cluttered-fmnist: score the pointing games against the object's box "
                        "(the protocol) or its pixel mask")
    p.add_argument("--limit", type=count, default=1000,
                   help="evaluate the first N images (0: all)")
    p.add_argument("--steps", type=positive_int, default=16,
                   help="deletion/insertion steps (H*W/steps pixels each)")
    p.add_argument("--road", action="store_true",
                   help="also ROAD (remove and debias, Rong et al. 2022): the target's "
                        "probability with 10..90%% of the pixels removed most- (MoRF) and "
                        "least-relevant first (LeRF) and filled by noisy linear imputation; "
                        "18 more forward passes and imputations per image")
    p.add_argument("--sanity-images", type=count, default=16,
                   help="images for the cascading-randomisation sanity check (0: skip it)")
    p.add_argument("--out", default="eval-out", help="output folder")
    p.add_argument("--device", type=device_arg, default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per batch")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="of the many perturbed forward passes (maps are always fp32); bf16 "
                        "is ~2x faster on CPUs with AMX")
    p.add_argument("--seed", type=int, default=0, help="tie-breaking and bootstrap seed")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from explain.jobs.evaluate import evaluate_on
    from explain.methods import select
    from explain.metrics.report import summary, table_rows, text_table
    from explain.registry import create_model
    model = create_model(args.model, args.weights, args.device)
    report, files = evaluate_on(model, args.data, select(model, args.methods), args.layer,
                                args.boxes, args.gt, args.limit or None, args.batch_size,
                                args.steps, args.sanity_images, args.seed, args.precision,
                                args.out, road=args.road, options=method_options(args))
    if args.json:
        print(json.dumps(report.to_dict(), allow_nan=False))
    else:
        print(summary(report))
        print(text_table(*table_rows(report)))
        print("wrote " + ", ".join(str(f) for f in files.values()))
    if report.failed:
        print(f"{len(report.failed)} of {report.images + len(report.failed)} image(s) failed",
              file=sys.stderr)
    return 1 if report.failed else 0
