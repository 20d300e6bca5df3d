"""Entry point: `explain IMAGE ...` explains images; other jobs are subcommands.

Building the parser imports no torch (see cli/common.py): each command imports the library
when it runs."""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import signal
import sys
from pathlib import Path

from explain.errors import ExplainError
from explain.runtime import tune_allocator

from .common import (Parser, command_typo, describe, error, library_messages, os_error,
                     resolve_device)


def commands() -> list:
    """Every `cli/*_cmd.py` module is a subcommand (it defines add_parser and run)."""
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.endswith("_cmd"))
    return [importlib.import_module(f"{__package__}.{n}") for n in names]


def build_parser() -> Parser:
    parser = Parser(
        prog="explain",
        description="Visual explanations for image classifiers: native attention maps "
                    "(ABN, RAN, CBAM, ...) and the CAM family, as overlays, galleries and "
                    "editable maps.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in commands():
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # a reader that left shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # `explain models --json | head`: the reader has what it wanted. Stop quietly, as a
        # Unix tool killed by SIGPIPE would; stdout goes to /dev/null so that Python's own
        # flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(argv: list[str] | None) -> int:
    tune_allocator()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    subcommands = parser.subcommands()
    if argv and argv[0] not in subcommands and argv[0] not in ("-h", "--help"):
        typo = command_typo(argv[0], list(subcommands))
        if typo:
            parser.error(typo)
        argv.insert(0, "image")
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        with library_messages():
            if getattr(args, "device", None):
                args.device = resolve_device(args.device)
            return args.run(args)
    except ExplainError as e:
        error(describe(e, subcommands[args.command]))
        return 1
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except OSError as e:  # the disk, the folder or the device failed us: say which and why
        if isinstance(e, BrokenPipeError):
            raise
        error(os_error(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
