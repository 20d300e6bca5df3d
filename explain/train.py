"""One training loop for training from scratch and for fine-tuning.

- Batches come from a seeded permutation per epoch (`trainsets.SeededBatches`), so a resumed run sees
  exactly the batches an uninterrupted one would; augmentation is seeded per step likewise.
- Losses are pluggable (explain.losses); the architecture names its own.
- Checkpoints (weights + optimizer + position, one unit: explain.checkpoint) are written
  every epoch and every `checkpoint_every` steps; `resume` continues from the last one.
- Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DDP and each rank takes its share
  of every batch permutation; rank 0 writes.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .checkpoint import (WEIGHTS, load_checkpoint, load_into, load_training_state, read_card,
                         save_checkpoint, save_training_state)
from .domain import domain_of
from .errors import ExplainError
from .losses import LOSSES
from .models import build, get_arch
from .precision import autocast_dtype
from .trainsets import TrainSet, load_trainset

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    arch: str
    data: str
    out: str
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"         # auto | fp32 | bf16
    resume: bool = False
    workers: int = 0
    max_steps: int | None = None    # stop early (a later --resume continues)
    checkpoint_every: int = 200     # steps
    augment: bool = True
    limit: int | None = None        # train on the first N training samples only
    init: str | None = None         # start from this checkpoint's weights (fine-tuning)
    freeze: list[str] = field(default_factory=list)  # modules kept fixed, see frozen_modules
    optimizer: str = "sgd"          # sgd (momentum 0.9, Nesterov) | adam
    arch_kwargs: dict = field(default_factory=dict)
    command: str = ""


def augment(x: torch.Tensor, maps: list[torch.Tensor], g: torch.Generator, pad: int
            ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Random translation by up to `pad` px and horizontal flip, the same for x and each map."""
    b = x.shape[0]
    flip = torch.rand(b, generator=g) < 0.5
    shift = torch.randint(-pad, pad + 1, (b, 2), generator=g).float()

    def warp(t: torch.Tensor) -> torch.Tensor:
        h, w = t.shape[-2:]
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = torch.where(flip, -1.0, 1.0)
        theta[:, 1, 1] = 1.0
        theta[:, 0, 2] = shift[:, 0] * 2 / w
        theta[:, 1, 2] = shift[:, 1] * 2 / h
        grid = F.affine_grid(theta.to(t.device, t.dtype), list(t.shape), align_corners=False)
        return F.grid_sample(t, grid, mode="nearest", padding_mode="zeros", align_corners=False)

    return warp(x), [warp(m) for m in maps]


def frozen_modules(net: nn.Module, patterns: list[str]) -> list[nn.Module]:
    """The modules named by fnmatch `patterns` on their paths (`att_layer`, `backbone.*conv*`);
    the word `features` stands for the feature extractor of an architecture with a feature
    split. A pattern that names nothing is an error (a typo would silently train it)."""
    out: list[nn.Module] = []
    for pattern in patterns:
        found = net.feature_modules() if pattern == "features" else \
            [m for name, m in net.named_modules() if name and fnmatchcase(name, pattern)]
        if not found:
            raise ExplainError(f"{pattern!r} names no module of {type(net).__name__}",
                               param="freeze")
        out += found
    return out


@torch.no_grad()
def evaluate(net: nn.Module, data: TrainSet, device: torch.device, batch_size: int = 512,
             dtype: torch.dtype | None = None, branches: bool = False) -> dict[str, float]:
    """Top-1 accuracy of the prediction, and with `branches` (an ABN: its architecture
    declares re-scoring) of the attention branch too."""
    net.eval()
    kw = {"from_features": True} if data.features else {}
    correct = att_correct = total = 0
    for batch in data.loader(batch_size, seed=0, epoch=0, shuffle=False):
        x, y = batch["x"].to(device), batch["y"].to(device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            if branches:
                out = net.forward_all(x, **kw)
                att_correct += (out.att_logits.argmax(1) == y).sum().item()
                logits = out.logits
            else:
                logits = net(x, **kw)
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
    res = {"accuracy": correct / max(total, 1)}
    if branches:
        res["attention_branch_accuracy"] = att_correct / max(total, 1)
    return res


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train(cfg: TrainConfig, loss_kwargs: dict | None = None,
          train_set: TrainSet | None = None, test_set: TrainSet | None = None,
          trainable: Callable[[nn.Module], list[nn.Parameter]] | None = None,
          progress: bool = True, loss_fn: Callable | None = None,
          frozen: Callable[[nn.Module], list[nn.Module]] | None = None) -> Path:
    """Train (or fine-tune) and write a checkpoint + card to `cfg.out`; returns that folder.
    `loss_fn` replaces the architecture's own loss (same call shape as explain.losses).
    `trainable` picks the parameters to optimise (default: all); `frozen` names modules
    kept fixed: no gradient, and in eval mode while the rest trains, so that their
    BatchNorm statistics do not move either."""
    rank, world = _dist_info()
    device = torch.device(cfg.device if cfg.device != "cuda" or world == 1
                          else f"cuda:{rank % torch.cuda.device_count()}")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    out = Path(cfg.out)
    if train_set is None or test_set is None:
        train_set, test_set = load_trainset(cfg.data, seed=cfg.seed, limit=cfg.limit)
    arch = get_arch(cfg.arch)
    if train_set.features not in (None, cfg.arch):
        raise ExplainError(f"{cfg.data} holds features computed by {train_set.features}, "
                           f"not by {cfg.arch}", param="data")
    size = train_set.input.size[0]
    if cfg.init:
        init_net, init_card = load_checkpoint(cfg.init)
        kwargs = {**init_card["arch_kwargs"], **cfg.arch_kwargs}  # overrides keep weight shapes
        net = build(cfg.arch, kwargs)
        net.load_state_dict(init_net.state_dict())
    else:
        kwargs = arch.kwargs(len(train_set.classes), train_set.input.channels, size,
                             **cfg.arch_kwargs)
        net = build(cfg.arch, kwargs)
        if arch.caps.pretrained:
            net.load_pretrained()
    net = net.to(device).to(memory_format=torch.channels_last)
    fixed = (frozen(net) if frozen else []) + frozen_modules(net, cfg.freeze)
    for p in (p for m in fixed for p in m.parameters()):
        p.requires_grad_(False)
    params = trainable(net) if trainable else [p for p in net.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.Adam(groups, lr=cfg.lr) if cfg.optimizer == "adam" else \
        torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    steps_per_epoch = train_set.num_batches(cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = min(steps_per_epoch, max(1, total // 20))
    epoch, start = 0, 0
    saved = load_training_state(out) if cfg.resume else None
    if saved:
        folder, state = saved
        load_into(net, read_card(folder), folder / WEIGHTS)
        opt.load_state_dict(state["optimizer"])
        epoch, start = int(state["epoch"]), int(state["step"])
        if rank == 0 and progress:
            log.info("resuming %s at epoch %d, step %d", out, epoch + 1, start)
    elif cfg.resume and rank == 0:
        log.warning("resume: no saved state in %s; starting fresh", out)
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    loss_fn = loss_fn or LOSSES[train_set.loss or arch.loss]
    dtype = autocast_dtype(cfg.precision, device)
    loss_kwargs = {**({"from_features": True} if train_set.features else {}), **(loss_kwargs or {})}
    augment_x = cfg.augment and not train_set.features
    base_card = {"name": out.name, "arch": cfg.arch, "native_maps": arch.map_names,
                 "arch_kwargs": kwargs,
                 "classes": train_set.classes, "input": train_set.input.to_dict(),
                 "data": cfg.data, "seed": cfg.seed, "command": cfg.command,
                 "domain": train_set.domain or domain_of({"data": cfg.data}, train_set.input,
                                                         train_set.classes),
                 "config": asdict(cfg), "torch": torch.__version__}
    t0 = time.perf_counter()
    steps_done = 0

    def save_state(ep: int, st: int) -> None:
        if rank != 0:
            return
        save_training_state(out, net, {**base_card, "epoch": ep, "step": st},
                            {"optimizer": opt.state_dict(), "epoch": ep, "step": st})

    for ep in range(epoch, cfg.epochs):
        model.train()
        for m in fixed:
            m.eval()
        first = start if ep == epoch else 0
        loader = train_set.loader(cfg.batch_size, cfg.seed, ep, start=first, rank=rank,
                                  world=world, workers=cfg.workers)
        bar = tqdm(loader, total=steps_per_epoch, initial=first, disable=rank != 0 or not progress,
                   desc=f"epoch {ep + 1}/{cfg.epochs}", dynamic_ncols=True, file=sys.stderr)
        seen = correct = 0
        for i, batch in enumerate(bar, start=first):
            step = ep * steps_per_epoch + i
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, cfg.lr, warmup)
            x, y = batch["x"].to(device), batch["y"].to(device)
            maps = [batch[k].to(device) for k in ("edit_map",) if k in batch]
            if augment_x:
                g = torch.Generator().manual_seed(cfg.seed * 7_919 + step)
                x, maps = augment(x, maps, g, pad=max(1, size // 14))
            extras = dict(batch, x=x, y=y, **dict(zip(("edit_map",), maps)))
            if "has_edit" in batch:
                extras["has_edit"] = batch["has_edit"].to(device)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss, logits, parts = loss_fn(model, x, y, extras, **loss_kwargs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(y)
            correct += (logits.argmax(1) == y).sum().item()
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.3f}",
                            **{k: f"{v:.3f}" for k, v in parts.items()})
            steps_done += 1
            if cfg.max_steps is not None and steps_done >= cfg.max_steps:
                save_state(ep, i + 1)
                bar.close()
                return out
            if cfg.checkpoint_every and (i + 1) % cfg.checkpoint_every == 0:
                save_state(ep, i + 1)
        bar.close()
        save_state(ep + 1, 0)
    # the card reports the saved weights in fp32, as every later evaluation (eval, finetune
    # reports) scores them; bf16 autocast is for the training steps only
    scores = evaluate(net, test_set, device, branches=arch.caps.rescore is not None)
    metrics = {f"test_{k.replace('accuracy', test_set.measures)}": round(v, 4)
               for k, v in scores.items()}
    metrics["train_time_s"] = round(time.perf_counter() - t0, 1)
    metrics["test_images"] = len(test_set)
    if rank == 0:
        save_checkpoint(out, net, {**base_card, "epochs": cfg.epochs, "metrics": metrics})
        if progress:
            log.info("%s: test %s %.4f", out, test_set.measures.replace("_", " "),
                     metrics[f"test_{test_set.measures}"])
    if world > 1:
        dist.barrier()
    return out
