"""`explain models`: the registry, with inputs, classes, native maps and measured accuracy."""
from __future__ import annotations

import argparse

from explain.catalog import list_models

from .common import to_json

HELP = "list the registered models"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help=HELP, description=(
        HELP + ". 'vs plain' is the test accuracy minus that of the plain ResNet trained on the "
        "same data (for as many epochs, where the zoo has one), in percentage points. Any "
        "checkpoint folder, torchvision:ARCH (with --weights) or package.module:function "
        "works too."))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows = list_models()
    if args.json:
        print(to_json(rows, indent=2))
        return 0
    names = [r["name"] + (f" ({', '.join(r['aliases'])})" if r["aliases"] else "") for r in rows]
    w = max(map(len, names))
    print(f"{'name':{w}} {'input':>9} {'classes':>7} {'native maps':14} {'test acc':>8} "
          f"{'vs plain':>8}  description")
    for name, r in zip(names, rows):
        acc = f"{r['test_accuracy']:.2%}" if r["test_accuracy"] is not None else "-"
        delta = f"{r['vs_plain']:+.2f}" if r["vs_plain"] is not None else "-"
        size = "x".join(map(str, r["input"]))
        print(f"{name:{w}} {size:>9} {r['classes']:>7} {','.join(r['native_maps']) or '-':14} "
              f"{acc:>8} {delta:>8}  {r['description']}")
    return 0
