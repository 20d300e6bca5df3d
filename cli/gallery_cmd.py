"""`explain gallery INPUT --model M --methods abn,gradcam --out DIR`: one browsable HTML page
of many images (a row each, a column per map), with overlays, a manifest and a contact sheet.
"""
from __future__ import annotations

import argparse
import sys

from explain.paths import display

from .common import DEVICE_HELP, add_model_args, device_arg, method_options, positive_int

HELP = "build an HTML gallery of many images: a row per image, a column per map"
EPILOG = """\
INPUT is a folder (with class sub-folders, as an ImageFolder, they give the true labels),
a glob in quotes ('photos/**/*.jpg') or a text file listing one image a line (optionally
followed by a tab and its class).

OUT gets index.html (open it from disk; no server needed), overlays/, inputs/, thumbs/
(only for tiles larger than 128 px), manifest.json, manifest.csv and contact-sheet.png (the
first 12 readable rows, for a quick look; the page has them all). Unreadable images become rows marked
as errors and the exit status is 1. An interrupted run leaves a valid gallery of what it
finished; run the same command with --resume to complete it.

Scale out: torchrun --nproc-per-node N -m explain gallery ... shards the images by rank.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gallery", help=HELP, description=HELP + ".", epilog=EPILOG)
    p.add_argument("input", metavar="INPUT", help="folder, quoted glob, or list file")
    add_model_args(p)
    p.add_argument("--out", default="gallery-out", help="output folder")
    p.add_argument("--title", help="page title (default: INPUT and model)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images a batch")
    p.add_argument("--workers", type=int, default=1,
                   help="DataLoader processes decoding images; 0 decodes in the main "
                        "process")
    p.add_argument("--streams", type=positive_int,
                   help="batches explained at once, each on its own copy of the model and an "
                        "equal share of the torch threads (default: on CPU one a torch thread, "
                        "up to 4; on a GPU 2)")
    p.add_argument("--limit", type=positive_int, help="only the first N images of INPUT")
    p.add_argument("--device", type=device_arg, default="auto",
                   help=DEVICE_HELP + "; under torchrun, cuda means each rank's local GPU")
    p.add_argument("--resume", action="store_true",
                   help="continue the gallery in OUT: skip rows already written, retry failed ones")
    p.add_argument("--size", type=positive_int,
                   help="side of the full-size tiles in px (default: the model's input size; "
                        "larger costs speed)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    p.add_argument("--cmap", default="jet", help="matplotlib colormap")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from explain.jobs.gallery import make_gallery
    summary, leader = make_gallery(
        args.input, args.out, args.model, args.weights, args.device, args.methods, args.layer,
        args.title, args.size, args.alpha, args.cmap, args.batch_size, args.workers, args.limit,
        args.resume, args.progress, method_options(args), args.streams)
    if leader and summary.outside:
        print(f"warning: {summary.outside} of {summary.rows} images are outside the domain of "
              f"{args.model} ({summary.domain}); the page marks them", file=sys.stderr)
    if leader:
        print(f"gallery: {summary.rows} rows ({summary.new} written now, {summary.skipped} "
              f"already done), {summary.errors} unreadable, {summary.seconds:.1f} s "
              f"-> {display(summary.out / 'index.html')}")
    return 1 if summary.errors else 0
