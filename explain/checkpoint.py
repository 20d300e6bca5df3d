"""Checkpoints: `model.safetensors` + `card.json` (architecture, kwargs, classes, input spec,
command, seed, data, measured accuracy). Both written atomically.

A training run's resumable state is one unit of three files, weights, card and optimizer
state (`train_state.pt`): each save fills a new folder `OUT/.ckpt-*`, then swaps the
symbolic link `OUT/last` to it with one atomic rename. A kill at any moment leaves `last`
naming a complete, consistent checkpoint (the new one or the one before), never weights of
one step with the optimizer state of another; folders it does not name are removed.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
from pathlib import Path

import torch
from safetensors.torch import save as st_save
from torch import nn

from .atomic import atomic_write_bytes, atomic_write_text
from .catalog import CARD
from .errors import ExplainError
from .models import build
from .weights import load_weights, read_state_dict

WEIGHTS = "model.safetensors"
LAST, STATE, UNIT = "last", "train_state.pt", ".ckpt-"


def tensors_of(net: nn.Module) -> dict[str, torch.Tensor]:
    net = net.module if hasattr(net, "module") else net
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


def save_checkpoint(out: str | os.PathLike, net: nn.Module, card: dict) -> Path:
    out = Path(out)
    atomic_write_bytes(out / WEIGHTS, st_save(tensors_of(net)))
    atomic_write_text(out / CARD, json.dumps(card, indent=2, default=list) + "\n")
    return out


def read_card(path: str | os.PathLike) -> dict:
    path = Path(path)
    card_path = path / CARD if path.is_dir() else path
    try:
        return json.loads(card_path.read_text())
    except FileNotFoundError:
        raise ExplainError(f"{path}: not a checkpoint (no {CARD})") from None
    except json.JSONDecodeError as e:
        raise ExplainError(f"{card_path}: corrupt model card ({e})") from None


def load_checkpoint(path: str | os.PathLike, weights: str | os.PathLike | None = None
                    ) -> tuple[nn.Module, dict]:
    """Rebuild the network a card describes and load its weights (or `weights` instead)."""
    path = Path(path)
    card = read_card(path)
    directory = path if path.is_dir() else path.parent
    net = build(card["arch"], card["arch_kwargs"])
    src = Path(weights) if weights else directory / WEIGHTS
    load_weights(net, read_state_dict(src), str(src))
    return net.eval(), card


def save_training_state(out: str | os.PathLike, net: nn.Module, card: dict, state: dict) -> Path:
    """Write weights, card and `state` (optimizer, position) as one unit and point
    `out/last` at it (see module doc); returns the unit's folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unit = out / f"{UNIT}{secrets.token_hex(4)}"
    link = out / LAST
    try:
        unit.mkdir()
        save_checkpoint(unit, net, card)
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(unit / STATE, buf.getvalue())
        if link.is_dir() and not link.is_symlink():  # a run of an older version: last/ + STATE
            (out / STATE).unlink(missing_ok=True)
            shutil.rmtree(link)
        temp = out / f".{LAST}{unit.name}.tmp"
        try:
            os.symlink(unit.name, temp)
            os.replace(temp, link)  # the switch: atomic
        except OSError as e:
            raise OSError(e.errno, e.strerror, os.fspath(link)) from e
    except BaseException:
        if not (link.is_symlink() and os.readlink(link) == unit.name):  # not yet switched
            shutil.rmtree(unit, ignore_errors=True)
        raise
    _fsync_dir(out)
    for old in out.glob(f"{UNIT}*"):  # units a kill or an error left behind
        if old != unit:
            shutil.rmtree(old, ignore_errors=True)
    for temp in out.glob(f".{LAST}{UNIT}*.tmp"):
        temp.unlink(missing_ok=True)
    return unit


def load_training_state(out: str | os.PathLike) -> tuple[Path, dict] | None:
    """(folder of the weights, state) of the checkpoint `out/last` names; None if none.
    Reads the layout of older versions too (`out/last/` a folder, `out/train_state.pt`)."""
    out = Path(out)
    folder = out / LAST
    state = folder / STATE if folder.is_symlink() else out / STATE
    if not state.is_file():
        return None
    return folder, torch.load(state, map_location="cpu", weights_only=True)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a crash after it does not bring the old name back)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some file systems cannot fsync a folder
            os.fsync(fd)
    finally:
        os.close(fd)
