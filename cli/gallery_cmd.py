"""`explain gallery INPUT --model M --methods abn,gradcam --out DIR`: one browsable HTML page
of many images (a row each, a column per map), with overlays, a manifest and a contact sheet.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from explain.errors import ExplainError
from explain.pipeline import explain_batch
from explain.registry import Model, create_model
from explain.gallery.build import Options, build_gallery
from explain.gallery.inputs import collect
from explain.gallery.outdir import check_writable
from explain.gallery.shard import join, leave
from explain.gallery.writer import Style

from .common import add_model_args, device_arg, positive_int
from .image_cmd import parse_methods

HELP = "build an HTML gallery of many images: a row per image, a column per map"
EPILOG = """\
INPUT is a folder (with class sub-folders, as an ImageFolder, they give the true labels),
a glob in quotes ('photos/**/*.jpg') or a text file listing one image a line (optionally
followed by a tab and its class).

OUT gets index.html (open it from disk; no server needed), overlays/, inputs/, thumbs/,
manifest.json, manifest.csv and contact-sheet.png. Unreadable images become rows marked
as errors and the exit status is 1. An interrupted run leaves a valid gallery of what it
finished; run the same command with --resume to complete it.

Scale out: torchrun --nproc-per-node N -m explain gallery ... shards the images by rank.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gallery", help=HELP, description=HELP + ".", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", help="folder, quoted glob, or list file")
    add_model_args(p)
    p.add_argument("--out", default="gallery-out", help="output folder (default: gallery-out)")
    p.add_argument("--title", help="page title (default: INPUT and model)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images a batch (32)")
    p.add_argument("--workers", type=int, default=1,
                   help="DataLoader processes decoding images; 0 decodes in the main "
                        "process (default 1)")
    p.add_argument("--limit", type=positive_int, help="only the first N images of INPUT")
    p.add_argument("--device", type=device_arg, default="cpu",
                   help="auto, cpu, cuda or cuda:N (default cpu; under torchrun, cuda means "
                        "each rank's local GPU)")
    p.add_argument("--resume", action="store_true",
                   help="continue the gallery in OUT: skip rows already written, retry failed ones")
    p.add_argument("--size", type=positive_int,
                   help="side of the full-size tiles in px (default: the model's input size; "
                        "larger costs speed)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (0.5)")
    p.add_argument("--cmap", default="jet", help="matplotlib colormap (jet)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    p.set_defaults(run=run)


def check_methods(model: Model, methods: list[str], layer: str | None) -> None:
    """Run every method once on a blank input, so a method the model cannot give (abn on a
    model without an attention branch, cam without a GAP head, a wrong --layer) fails with
    its message before any image is touched."""
    h, w = model.input.size
    explain_batch(model, torch.zeros(1, model.input.channels, h, w), methods, layer)


def run(args: argparse.Namespace) -> int:
    if args.workers < 0:
        raise ExplainError("must be 0 or more", param="workers")
    if not 0.0 <= args.alpha <= 1.0:
        raise ExplainError("must be between 0 and 1", param="alpha")
    group = join()
    try:
        items = collect(args.input, args.limit)
        device = args.device
        if group.world > 1 and device.startswith("cuda"):
            device = f"cuda:{group.local_rank}"
        model = create_model(args.model, args.weights, device)
        methods = parse_methods(args.methods, model.native)
        check_methods(model, methods, args.layer)
        out = Path(args.out)
        check_writable(out)
        title = args.title or f"{Path(args.input.rstrip('/')).name or args.input} · {model.name}"
        opts = Options(methods=methods, layer=args.layer, title=title,
                       style=Style(args.size or max(model.input.size), args.alpha, args.cmap),
                       batch_size=args.batch_size, workers=args.workers, resume=args.resume,
                       progress=args.progress)
        summary = build_gallery(model, items, out, opts, group)
    finally:
        leave(group)
    if group.leader:
        print(f"gallery: {summary.rows} rows ({summary.new} written now, {summary.skipped} "
              f"already done), {summary.errors} unreadable, {summary.seconds:.1f} s "
              f"-> {out / 'index.html'}")
    return 1 if summary.errors else 0
