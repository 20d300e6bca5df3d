"""Pieces every subcommand shares: the parser, argument types and the one-line error
reporting. Nothing here imports torch: `explain --help`, `explain models` and argument
errors answer in a fraction of a second, and a command imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import shlex
import sys
from pathlib import Path
from typing import Callable, Iterator

from explain.catalog import DEFAULT_MODEL
from explain.errors import ExplainError, did_you_mean
from explain.paths import display

# Library parameter -> the option names (argparse dests) that stand for it in some command.
PARAM_DESTS = {"method": ("methods",), "targets": ("target",), "inputs": ("inputs", "images", "input")}


def _method_names() -> str:
    from explain.methods import METHODS
    return ", ".join(sorted(METHODS))


def _arch_names() -> str:
    from explain.models import ARCHS
    return ", ".join(sorted(ARCHS))


# Placeholders a help text may hold for names that only registries importing torch know:
# filled in when that help is shown, not when the parser is built.
NAMES: dict[str, Callable[[], str]] = {"<METHODS>": _method_names, "<ARCHS>": _arch_names}


DEVICE_HELP = "auto (cuda where available, else cpu), cpu, cuda or cuda:N"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every command's help: each option's default said once -- not for flags, not where
    the text says it already, never "None" -- and descriptions rewrapped paragraph by
    paragraph (a blank line between them)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if isinstance(action, argparse.BooleanOptionalAction) and "default" not in text:
            return f"{text} (default: {action.option_strings[0 if action.default else 1]})"
        if (action.default in (None, argparse.SUPPRESS) or action.nargs == 0
                or "%(default)" in text or "default" in text.lower()):
            return text
        return text + " (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(super(HelpFormatter, self)._fill_text(p, width, indent)
                            for p in text.split("\n\n"))


class Parser(argparse.ArgumentParser):
    """argparse, with registry names filled into help texts only when help is shown (see
    NAMES), "did you mean" for a mistyped option, and HelpFormatter."""

    _argv: list[str] = []

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self.subcommands().get(getattr(ns, "command", None) or "", self)
            command.error(unrecognized(extras, command))
        return ns

    def subcommands(self) -> dict[str, "Parser"]:
        actions = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        return dict(actions[0].choices) if actions else {}

    def error(self, message: str):  # type: ignore[override]
        # A missing argument next to a mistyped option: the typo is the news.
        if message.startswith("the following arguments are required"):
            known = {o for a in self._actions for o in a.option_strings}
            typos = [a for a in self._argv if a.startswith("-") and a != "-"
                     and a.split("=", 1)[0] not in known
                     and not any(k.startswith(a.split("=", 1)[0]) for k in known)]
            if typos:
                message = unrecognized(typos, self)
        super().error(message)

    def format_help(self) -> str:
        for action in self._actions:
            for mark, names in NAMES.items():
                if action.help and mark in action.help:
                    action.help = action.help.replace(mark, names())
        return super().format_help()


def unrecognized(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """The message for arguments `parser` does not take: the first unknown option with the
    nearest real one."""
    flags = [e.split("=", 1)[0] for e in extras if e.startswith("-") and e != "-"]
    if not flags:
        return f"unrecognized arguments: {' '.join(extras)}"
    options = [o for a in parser._actions for o in a.option_strings]
    return f"unrecognized argument {flags[0]}{did_you_mean(flags[0], options)}"


def command_typo(word: str, commands: list[str]) -> str | None:
    """`explain modles`: the message when a word that is no file is close to a command (the
    first word is otherwise an image to explain)."""
    if Path(word).exists() or any(c in word for c in "*?[/\\."):
        return None
    hint = did_you_mean(word, commands)
    return f"{word!r} is neither a command nor a file{hint}" if hint else None


def device_arg(value: str) -> str:
    """auto, cpu, mps, cuda or cuda:N, checked for spelling only: whether CUDA is there is
    asked (of torch) when the command runs, see resolve_device."""
    if value in ("auto", "cpu", "mps", "cuda") or value.startswith("cuda:") and value[5:].isdigit():
        return value
    raise argparse.ArgumentTypeError(f"{value}: expected auto, cpu, cuda or cuda:N")


def resolve_device(value: str) -> str:
    """"auto" -> cuda where available, else cpu; cuda where there is none is an error."""
    import torch
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value.startswith("cuda") and not torch.cuda.is_available():
        raise ExplainError(f"{value}: CUDA is not available on this machine", param="device")
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
                   help="comma-separated, from: <METHODS>; or 'all' (every "
                        "method the model gives), 'native' (its native maps), 'cam-family'. "
                        "Default: the model's native maps and gradcam")
    p.add_argument("--scorecam-channels", type=count, default=64, metavar="K",
                   help="Score-CAM masks the input with the K channels of highest mean "
                        "activation (0: every channel, the method as published)")
    p.add_argument("--layer", help="target layer for CAM-family methods (default: automatic); "
                   "for a native method with several maps (RAN modules, CBAM/SE blocks, "
                   "Attend-and-Rectify modules) the one map to use (default: all of them)")


def point_arg(value: str) -> tuple[float, float]:
    """X,Y: two numbers (pixels)."""
    parts = value.split(",")
    try:
        x, y = (float(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not X,Y (two numbers, pixels)") from None
    if x < 0 or y < 0:
        raise argparse.ArgumentTypeError(f"{value}: pixels count from 0")
    return x, y


def method_options(args: argparse.Namespace) -> dict:
    """The options add_model_args gives the methods (explain.pipeline.explain_batch)."""
    return {"channels": args.scorecam_channels}


def count(value: str) -> int:
    """A positive integer, or 0 (meaning "all" or "none", as the option says)."""
    return 0 if value.strip() == "0" else positive_int(value)


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
        from tqdm import tqdm
        prefix = record.levelname.lower() + ": " if record.levelno >= logging.WARNING else ""
        tqdm.write(prefix + record.getMessage(), file=sys.stderr)


@contextlib.contextmanager
def _bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for one long library task (explain.progress); drawn only
    where stderr is a terminal, and gone when the task ends."""
    from tqdm import tqdm
    with tqdm(total=total, desc=description, leave=False, file=sys.stderr, disable=None,
              dynamic_ncols=True) as bar:
        yield bar.update


@contextlib.contextmanager
def library_messages() -> Iterator[None]:
    """While a command runs, the library's warnings and progress notes reach stderr, and
    its long tasks (Score-CAM's masked inputs, ...) show a progress bar."""
    from explain import progress
    log = logging.getLogger("explain")
    handler, level = _StderrLines(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    listener = progress.set_listener(_bar)
    try:
        yield
    finally:
        progress.set_listener(listener)
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
    """This command as a shell would take it back (a card's command can be pasted)."""
    return shlex.join(["explain", *sys.argv[1:]])


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
