"""`explain data export`: a built-in data set written out as an ImageFolder."""
from __future__ import annotations

import argparse
from pathlib import Path

from explain.atomic import check_writable
from explain.catalog import SYNTHETIC

from .common import positive_int

HELP = "write a built-in data set (with its masks) as an ImageFolder"
DESCRIPTION = """explain data export NAME --split test|train --out DIR writes the images of
NAME as DIR/<class>/<split>_<index>.png, a layout every other command reads (class folders
give the labels). Where the data set has ground-truth masks -- the decoy patch of
decoy-fmnist, the pasted item of cluttered-fmnist -- they are written beside it as
MASKS/<class>/<split>_<index>.png (white = the region), named after their images, ready for
`explain edit DIR --from-masks MASKS`. Generated data sets are the same for the same --seed."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help=HELP, description=DESCRIPTION)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    e = actions.add_parser("export", help="write NAME as an ImageFolder", description=DESCRIPTION)
    e.add_argument("name", choices=SYNTHETIC, metavar="NAME", help=", ".join(SYNTHETIC))
    e.add_argument("--split", choices=["train", "test"], default="test", help="which split")
    e.add_argument("--limit", type=positive_int, help="only the first N images")
    e.add_argument("--seed", type=int, default=0, help="generator seed of the synthetic sets")
    e.add_argument("--out", required=True, metavar="DIR", help="ImageFolder to write")
    e.add_argument("--masks", metavar="DIR",
                   help="where the masks go (default: DIR-masks beside DIR)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from explain.datasets import load_named
    from explain.export import export_images
    out = Path(args.out)
    check_writable(out)
    data = load_named(args.name, args.split, args.seed, args.limit)
    masks = Path(args.masks) if args.masks else out.with_name(out.name + "-masks")
    if data.masks is not None:
        check_writable(masks, "masks")
    with tqdm(total=len(data), desc=f"export {args.name} {args.split}", unit="img") as bar:
        for n in export_images(data, args.split, out, masks if data.masks is not None else None):
            bar.update(n)
    print(f"wrote {len(data)} image(s) of {args.name} ({args.split}) to {out}"
          + (f", masks to {masks}" if data.masks is not None else ""))
    return 0
