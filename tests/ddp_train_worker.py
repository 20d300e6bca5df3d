"""Run under torchrun by test_train_ddp.py: a few DDP training steps of a tiny model; each
rank then saves its own parameters, so the test can check that the ranks stayed in step."""
from __future__ import annotations

import sys

import torch
from safetensors.torch import save_file

from explain.datasets import fashion_mnist
from explain.models import get_arch
from explain.train import TrainConfig, train
from explain.trainsets import ArraySet

arch, out = sys.argv[1], sys.argv[2]
nets = []


def trainable(net):
    nets.append(net)
    return [p for p in net.parameters() if p.requires_grad]


cfg = TrainConfig(arch=arch, data="fashion-mnist", out=out, epochs=1, batch_size=16, lr=0.05,
                  precision="fp32", checkpoint_every=0, max_steps=3, arch_kwargs={"depths": (1, 1, 1), "widths": (4, 8, 8)})
train(cfg, train_set=ArraySet(fashion_mnist("train", limit=96)),
      test_set=ArraySet(fashion_mnist("test", limit=16)), trainable=trainable, progress=False)
rank = torch.distributed.get_rank()
save_file({k: p.detach().contiguous() for k, p in nets[0].named_parameters()},
          f"{out}/rank{rank}.safetensors")
