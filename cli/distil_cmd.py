"""`explain distil-views`: render augmented views of the offline photos and store the frozen
features and the teacher's logits for `explain train` (see explain.distil)."""
from __future__ import annotations

import argparse

from .common import command_line, positive_int

HELP = ("precompute views of offline photos (opencv-doc, tuxpaint-stamps-default) for "
        "distilling EfficientNet-Lite0 into an ABN with `explain train`")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distil-views", help=HELP, description=HELP + ".")
    p.add_argument("--out", required=True, help="folder to write (an interrupted run continues)")
    p.add_argument("--views", type=positive_int, default=16000, help="training views")
    p.add_argument("--seed", type=int, default=0, help="augmentation seed")
    p.add_argument("--batch-size", type=positive_int, default=32, help="views a batch")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from explain.distil import write_views
    from explain.photos import collect
    write_views(args.out, collect(), args.views, args.seed, batch_size=args.batch_size,
                command=command_line())
    return 0
