"""Entry point: `explain IMAGE ...` explains images; other jobs are subcommands."""
from __future__ import annotations

import argparse
import sys

from explain.errors import ExplainError

from . import image_cmd, models_cmd, train_cmd
from .common import error

COMMANDS = [image_cmd, models_cmd, train_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="explain",
        description="Visual explanations for image classifiers: native attention maps "
                    "(ABN, RAN, CBAM, ...) and the CAM family, as overlays, galleries and "
                    "editable maps.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMANDS:
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    if argv and argv[0] not in names and argv[0] not in ("-h", "--help"):
        argv.insert(0, "image")
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except ExplainError as e:
        error(str(e))
        return 1
    except KeyboardInterrupt:
        error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
