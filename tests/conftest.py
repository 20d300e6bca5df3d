"""Shared fixtures: tiny models saved through the real checkpoint path, sample images."""
from __future__ import annotations

from pathlib import Path

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
