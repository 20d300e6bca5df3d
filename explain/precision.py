"""Mixed precision: which autocast dtype a precision setting means on a device. Training
and the evaluation's perturbed forward passes both ask here."""
from __future__ import annotations

import torch


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """"fp32": None (no autocast); "bf16": bfloat16; "auto": bfloat16 where the device
    runs it fast (bf16-capable CUDA, or a CPU with oneDNN bf16 support), else None."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and \
        torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
