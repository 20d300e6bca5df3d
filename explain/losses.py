"""Training losses, one per architecture family, all with the same call shape:
loss_fn(model, x, y, batch) -> (loss, prediction logits, named parts for the progress bar).

`batch` may carry `edit_map` (B, 1, h, w) and `has_edit` (B,) for ABN fine-tuning with the
map loss of Mitsuhara et al.: L = L_att + L_per + gamma * ||M(x) - M'(x)||^2 on edited samples.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

LossOut = tuple[torch.Tensor, torch.Tensor, dict[str, float]]


def ce_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: dict) -> LossOut:
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    return loss, logits, {"ce": loss.item()}


def map_loss(att: torch.Tensor, edit: torch.Tensor, has_edit: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between M(x) and the edited M', summed over pixels, mean over the
    edited samples of the batch (zero when none is edited)."""
    if edit.shape[-2:] != att.shape[-2:]:
        edit = F.interpolate(edit, size=att.shape[-2:], mode="bilinear", align_corners=False)
    per_sample = (att.float() - edit.float()).pow(2).flatten(1).sum(1)
    w = has_edit.float()
    return (per_sample * w).sum() / w.sum().clamp(min=1.0)


def abn_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: dict,
             gamma: float = 0.0) -> LossOut:
    out = model(x, outputs="all")  # through forward: a DDP wrapper must see the call
    l_att = F.cross_entropy(out.att_logits, y)
    l_per = F.cross_entropy(out.logits, y)
    loss = l_att + l_per
    parts = {"att": l_att.item(), "per": l_per.item()}
    if gamma and "edit_map" in batch:
        l_map = map_loss(out.att_map, batch["edit_map"], batch["has_edit"])
        loss = loss + gamma * l_map
        parts["map"] = l_map.item()
    return loss, out.logits, parts


def attend_rectify_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: dict
                        ) -> LossOut:
    """NLL of the gated log-probability mixture plus the inter-head regulariser (already
    weighted by the model's `reg_weight`), as in the official Attend-and-Rectify code."""
    out = model(x, outputs="all")  # through forward, as abn_loss
    nll = F.nll_loss(out.logits, y)
    loss = nll + out.reg
    return loss, out.logits, {"nll": nll.item(), "reg": out.reg.item()}


def distil_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: dict,
                from_features: bool = False, temperature: float = 1.0) -> LossOut:
    """Distillation of an ABN from a teacher's logits (`batch["teacher"]`; `y`, the
    teacher's top-1 class, is not used), no labels needed: KL(teacher || branch) at
    `temperature`, times T^2 (Hinton et al. 2015), for the attention and the perception
    branch alike. Measured on the ImageNet ABN (abn_efficientnet_lite0): with the perception
    loss reaching M(x), KL flattens the map (its spread fell to 0 within 60 steps: a flat map
    changes the pretrained perception least); so that model's map is trained by the
    attention branch only (ABNHead.map_grad) and the perception branch learns to read it.
    KL rather than cross-entropy on the top-1: the perception branch's goal is to stay the
    teacher, ranks below the top-1 included."""
    out = model(x, outputs="all", from_features=from_features)
    t = temperature
    soft = F.log_softmax(batch["teacher"].float() / t, dim=1)

    def kl(logits: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits.float() / t, dim=1), soft, log_target=True,
                        reduction="batchmean") * t * t

    l_att, l_per = kl(out.att_logits), kl(out.logits)
    return l_per + l_att, out.logits, {"per": l_per.item(), "att": l_att.item()}


LOSSES: dict[str, Callable[..., LossOut]] = {"ce": ce_loss, "abn": abn_loss,
                                             "attend_rectify": attend_rectify_loss,
                                             "distil": distil_loss}
