"""Checkpoints: `model.safetensors` + `card.json` (architecture, kwargs, classes, input spec,
command, seed, data, measured accuracy). Both written atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save as st_save
from torch import nn

from .atomic import atomic_write_bytes, atomic_write_text
from .errors import ExplainError
from .models import build
from .weights import load_weights, read_state_dict

WEIGHTS, CARD = "model.safetensors", "card.json"


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
