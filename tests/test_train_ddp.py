"""Training under torchrun (2 CPU ranks, gloo): every architecture's loss must go through the
DDP wrapper's forward, or the gradients are not averaged and the ranks drift apart."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("ddp_train_worker.py")


@pytest.mark.parametrize("arch", ["abn_resnet", "attend_rectify"])
def test_ranks_stay_in_step(tmp_path, arch):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", str(WORKER), arch, str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    assert r0.keys() == r1.keys()
    saved = load_file(tmp_path / "last" / "model.safetensors")  # written by rank 0
    for k in r0:
        torch.testing.assert_close(r0[k], r1[k], msg=f"{arch}: {k} differs between ranks")
        assert torch.equal(r0[k], saved[k]), k
