"""Checkpoints: `model.safetensors` + `card.json` (architecture, kwargs, classes, input spec,
command, seed, data, measured accuracy). Both written atomically.

A training run's resumable state is one unit of three files, weights, card and optimizer
state (`train_state.pt`): each save fills a new folder `OUT/.ckpt-*`, then swaps the
symbolic link `OUT/last` to it with one atomic rename. A kill at any moment leaves `last`
naming a complete, consistent checkpoint (the new one or the one before), never weights of
one step with the optimizer state of another; folders it does not name are removed.

An architecture built on package-installed weights (capability `pretrained`) is stored as
what differs from them: the card's `base` names the weights file and its SHA-256, and
loading puts `pretrained_state()` under the stored tensors. A checkpoint of a network
distilled onto frozen ImageNet features is then a few MB, not the whole network.
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
from .errors import ExplainError, WeightsError
from .models import build, get_arch
from .weights import load_weights, read_state_dict

WEIGHTS = "model.safetensors"
LAST, STATE, UNIT = "last", "train_state.pt", ".ckpt-"


def tensors_of(net: nn.Module) -> dict[str, torch.Tensor]:
    net = net.module if hasattr(net, "module") else net
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


def _base_of(net: nn.Module, card: dict) -> dict[str, torch.Tensor]:
    """The tensors the card's architecture takes from installed weights ({} for others)."""
    if not card.get("arch") or not get_arch(card["arch"]).caps.pretrained:
        return {}
    return (net.module if hasattr(net, "module") else net).pretrained_state()


def save_checkpoint(out: str | os.PathLike, net: nn.Module, card: dict) -> Path:
    """Weights and card into `out`; for a `pretrained` architecture only the tensors that
    differ from the installed weights, the card naming those (`base`)."""
    out = Path(out)
    tensors = tensors_of(net)
    base = _base_of(net, card)
    if base:
        tensors = {k: v for k, v in tensors.items()
                   if k not in base or not torch.equal(v, base[k].to(v.dtype))}
        card = {**card, "base": get_arch(card["arch"]).cls.base_weights()}
    atomic_write_bytes(out / WEIGHTS, st_save(tensors))
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


def load_into(net: nn.Module, card: dict, src: str | os.PathLike) -> nn.Module:
    """Load the weights file `src` into `net` (built from `card`): over the installed
    weights the card's `base` names, which must be the very file it was trained on."""
    sd = read_state_dict(src)
    if card.get("base"):
        installed = get_arch(card["arch"]).cls.base_weights()
        if installed["sha256"] != card["base"]["sha256"]:
            raise WeightsError(
                f"{src}: stores what differs from {card['base']['package']}'s "
                f"{card['base']['file']} (sha256 {card['base']['sha256'][:12]}...), but the "
                f"installed file is another (sha256 {installed['sha256'][:12]}...); install the "
                "version named in pyproject.toml")
        sd = {**_base_of(net, card), **sd}
    return load_weights(net, sd, str(src))


def load_checkpoint(path: str | os.PathLike, weights: str | os.PathLike | None = None
                    ) -> tuple[nn.Module, dict]:
    """Rebuild the network a card describes and load its weights (or `weights` instead)."""
    path = Path(path)
    card = read_card(path)
    directory = path if path.is_dir() else path.parent
    net = build(card["arch"], card["arch_kwargs"])
    load_into(net, card, Path(weights) if weights else directory / WEIGHTS)
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
