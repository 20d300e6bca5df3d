"""Pieces every subcommand shares: argument types and the one-line error reporting."""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
from typing import Iterator

import torch
from tqdm import tqdm

from explain.errors import ExplainError
from explain.methods import METHODS
from explain.paths import display
from explain.registry import DEFAULT_MODEL

# Library parameter -> the option names (argparse dests) that stand for it in some command.
PARAM_DESTS = {"method": ("methods",), "targets": ("target",), "inputs": ("inputs", "images", "input")}


def device_arg(value: str) -> str:
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value.startswith("cuda") and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{value}: CUDA is not available on this machine")
    if value not in ("cpu", "mps") and not value.startswith("cuda"):
        raise argparse.ArgumentTypeError(f"{value}: expected auto, cpu, cuda or cuda:N")
    return value


def add_model_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    """--model, --weights, --methods, --layer: the same words in every subcommand that
    explains images."""
    p.add_argument("--model", required=required, default=None if required else DEFAULT_MODEL,
                   help="registry name (see `explain models`), checkpoint folder, "
                        "torchvision:ARCH or package.module:function"
                        + ("" if required else " (default: %(default)s)"))
    p.add_argument("--weights", help="weights file (.safetensors or .pth) for --model")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated, from: {', '.join(sorted(METHODS))}; or 'all' (every "
                        "method the model gives), 'native' (its native maps), 'cam-family'. "
                        "Default: the model's native maps and gradcam")
    p.add_argument("--layer", help="target layer for CAM-family methods (default: automatic); "
                   "for a native method with several maps (RAN modules, CBAM/SE blocks, "
                   "Attend-and-Rectify modules) the one map to use (default: all of them)")


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return n


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def flag(parser: argparse.ArgumentParser, param: str) -> str:
    """How `parser`'s command spells the library parameter `param`: its option (`--layer`)
    or, for a positional argument, its metavar (`INPUT`)."""
    dests = PARAM_DESTS.get(param, (param,))
    for action in parser._actions:
        if action.dest in dests:
            return action.option_strings[0] if action.option_strings else \
                str(action.metavar or action.dest.upper())
    return "--" + param.replace("_", "-")


def describe(e: ExplainError, parser: argparse.ArgumentParser) -> str:
    """The one line an ExplainError becomes, naming the command's own flag."""
    return f"{flag(parser, e.param)}: {e.message}" if e.param else e.message


class _StderrLines(logging.Handler):
    """Library log records as the CLI's stderr lines ("warning: ...", "error: ...", plain
    information), written through tqdm so that they do not tear a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = record.levelname.lower() + ": " if record.levelno >= logging.WARNING else ""
        tqdm.write(prefix + record.getMessage(), file=sys.stderr)


@contextlib.contextmanager
def library_messages() -> Iterator[None]:
    """While a command runs, the library's warnings and progress notes reach stderr."""
    log = logging.getLogger("explain")
    handler, level = _StderrLines(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def os_error(e: OSError) -> str:
    """One line for a failed file operation: the path(s) and the OS's reason."""
    reason = e.strerror or str(e)
    if e.filename is None:
        return reason
    if e.filename2 is not None:
        return f"{display(e.filename)} -> {display(e.filename2)}: {reason}"
    return f"{display(e.filename)}: {reason}"


def command_line() -> str:
    return "explain " + " ".join(sys.argv[1:])


def to_json(obj: object, **kwargs) -> str:
    """JSON text with every non-finite float as null: NaN and Infinity are not JSON, and a
    model whose output is not finite must not make --json unreadable."""
    return json.dumps(_finite(obj), allow_nan=False, **kwargs)


def _finite(obj: object) -> object:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
