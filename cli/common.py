"""Pieces every subcommand shares: argument types and the one-line error reporting."""
from __future__ import annotations

import argparse
import sys

import torch


def device_arg(value: str) -> str:
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value.startswith("cuda") and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{value}: CUDA is not available on this machine")
    if value not in ("cpu", "mps") and not value.startswith("cuda"):
        raise argparse.ArgumentTypeError(f"{value}: expected auto, cpu, cuda or cuda:N")
    return value


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


def command_line() -> str:
    return "explain " + " ".join(sys.argv[1:])
