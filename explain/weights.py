"""Safe weight loading: safetensors, or `torch.load(weights_only=True)` and nothing else.

Foreign checkpoints (official ABN / CBAM `.pth.tar`) are unwrapped from their training dicts
and stripped of DataParallel's `module.` prefix; a mismatch names the keys involved.
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read tensors from a .safetensors or torch file without executing any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{path}: not a valid safetensors file ({e})") from None
    try:
        with warnings.catch_warnings():
            # torch warns about any pickle protocol but 2 before the unpickler refuses (or
            # accepts) the file; the outcome is what the user needs to hear, not the warning
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{path}: refused to load: the file holds pickled objects other "
                           f"than tensors, which could run code ({first})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({e})") from None
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: holds no state dict of tensors")
    return strip_prefix(obj)


def strip_prefix(sd: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _not_real(sd: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> str | None:
    """Why the first tensor (in the model's order) that the model holds as floating point is
    not real numbers in `sd` (integers, booleans, complex, NaN or infinity), or None.
    load_state_dict would cast int/bool silently and NaN would reach every output."""
    for key, mine in own.items():
        theirs = sd.get(key)
        if theirs is None or not mine.is_floating_point():
            continue
        if not theirs.is_floating_point():
            return f"{key} is {str(theirs.dtype).removeprefix('torch.')}, not floating point"
        if not bool(torch.isfinite(theirs).all()):
            return f"{key} holds NaN or infinite values"
    return None


def load_weights(net: nn.Module, sd: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load `sd` into `net` strictly; old files may lack BatchNorm's `num_batches_tracked`.
    Tensors that are not real numbers where the model expects them are refused."""
    own = net.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"shape mismatch (file vs model): {_listing(wrong)}")
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        raise WeightsError(f"{source}: weights do not fit {type(net).__name__}; "
                           + "; ".join(parts))
    bad = _not_real(sd, own)
    if bad:
        raise WeightsError(f"{source}: refused: {bad} (weights must be finite floating-point "
                           "numbers)")
    full = {k: sd.get(k, own[k]) for k in own}
    net.load_state_dict(full, strict=True)
    return net
