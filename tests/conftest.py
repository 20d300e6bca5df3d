"""Shared fixtures: tiny models saved through the real checkpoint path, sample images."""
from __future__ import annotations

import math
import re
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from explain.checkpoint import save_checkpoint
from explain.datasets import FMNIST_CLASSES
from explain.models import build, get_arch
from explain.preprocess import InputSpec
from explain.registry import Model, create_model

torch.set_num_threads(1)  # pytest -n 2 runs one worker per core; more threads only contend

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "explain" / "samples"
FMNIST_SPEC = InputSpec(size=(28, 28), channels=1, mean=(0.286,), std=(0.353,))


def official_state(keys: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors for `keys` that keep a deep network's activations in range: He-scaled
    convolutions, BatchNorm scales near 1 but small on each residual branch's last one."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in keys.items():
        block = name.rsplit(".", 2)[0]
        last_bn = name.endswith(".bn3.weight") or (
            name.endswith(".bn2.weight") and f"{block}.bn3.weight" not in keys)
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(1000)
        elif name.endswith("running_var"):
            sd[name] = torch.rand(shape, generator=g) + 0.5
        elif last_bn and name.startswith(("layer", "att_layer")):
            sd[name] = torch.rand(shape, generator=g) * 0.2
        elif name.endswith("weight") and len(shape) == 1:
            sd[name] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 4:
            sd[name] = torch.randn(shape, generator=g) * (2 / math.prod(shape[1:])) ** 0.5
        else:
            sd[name] = torch.randn(shape, generator=g) * 0.1
    return sd


def save_as_from_gpu(obj, path: Path) -> None:
    """torch.save(obj, path) as PyTorch 0.4 wrote it on a GPU machine (the official releases
    of 2018-2019): the legacy (non-zip) format, storages of class torch.cuda.FloatStorage etc.
    located on "cuda:0", so that loading it on a CPU-only machine needs map_location."""
    registry = torch.serialization._package_registry
    with mock.patch.object(torch.serialization, "_package_registry",
                           [(-1, lambda storage: "cuda:0", None), *registry]):
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    raw = re.sub(rb"ctorch\n(\w+Storage)\n", rb"ctorch.cuda\n\1\n", Path(path).read_bytes())
    Path(path).write_bytes(raw)


def tiny_checkpoint(out: Path, arch: str = "abn_resnet", seed: int = 0, size: int = 28,
                    num_classes: int = 10, **overrides) -> Path:
    """An untrained, very small network of `arch`, written as a real checkpoint folder."""
    torch.manual_seed(seed)
    kw = get_arch(arch).kwargs(num_classes, 1, size, depths=(1, 1, 1), widths=(4, 8, 8),
                               **overrides)
    net = build(arch, kw)
    spec = InputSpec(size=(size, size), channels=1, mean=(0.286,), std=(0.353,))
    card = {"name": out.name, "arch": arch, "arch_kwargs": kw,
            "classes": FMNIST_CLASSES[:num_classes] if num_classes <= 10 else
            [str(i) for i in range(num_classes)],
            "input": spec.to_dict(), "data": "none (test fixture)", "seed": seed}
    return save_checkpoint(out, net, card)


@pytest.fixture(scope="session")
def tiny_abn_dir(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_abn")


@pytest.fixture(scope="session")
def tiny_resnet_dir(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_resnet", arch="resnet")


@pytest.fixture
def tiny_abn(tiny_abn_dir) -> Model:
    return create_model(str(tiny_abn_dir))


@pytest.fixture(scope="session")
def imagenet_model() -> Model:
    return create_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def fmnist_pngs(tmp_path_factory) -> Path:
    """An ImageFolder of 24 Fashion-MNIST-like PNGs (3 classes x 8), made from the samples."""
    root = tmp_path_factory.mktemp("fmnist_folder")
    rng = np.random.default_rng(0)
    for name in ("sneaker", "bag", "trouser"):
        base = np.asarray(Image.open(SAMPLES / "fmnist" / f"{name}.png"))
        (root / name).mkdir()
        for i in range(8):
            noisy = np.clip(base.astype(int) + rng.integers(-20, 21, base.shape), 0, 255)
            Image.fromarray(noisy.astype(np.uint8)).save(root / name / f"{name}_{i}.png")
    return root
