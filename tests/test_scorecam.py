"""Score-CAM: the fast default (the channels of highest mean activation) against the method
as published (every channel), on a small trained model; its progress is reported."""
from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from conftest import SAMPLES
from explain import progress
from explain.methods import Explainer
from explain.metrics.sanity import rank_correlation
from explain.pipeline import prepare
from explain.registry import create_model


@pytest.fixture(scope="module")
def resnet_and_samples():
    model = create_model("resnet")  # trained ResNet-20 on Fashion-MNIST: 64 channels at the end
    batch, errors = prepare(model, sorted((SAMPLES / "fmnist").glob("*.png")))
    assert not errors
    return model, batch.x


def test_the_fast_default_agrees_with_the_full_method(resnet_and_samples):
    model, x = resnet_and_samples
    full = Explainer(model, "scorecam", channels=0)(x)
    half = Explainer(model, "scorecam", channels=32)(x)
    assert full.raw.shape[1] == 1 and full.layer == half.layer
    rho = rank_correlation(full.maps, half.maps)
    assert rho.mean() >= 0.95, rho


def test_keeping_every_channel_is_the_full_method(resnet_and_samples):
    model, x = resnet_and_samples
    full = Explainer(model, "scorecam", channels=0)(x[:2])
    assert torch.allclose(Explainer(model, "scorecam", channels=64)(x[:2]).maps, full.maps)
    assert torch.allclose(Explainer(model, "scorecam", channels=500)(x[:2]).maps, full.maps)


def test_the_default_is_the_published_formula_over_the_top_channels(resnet_and_samples):
    """Computed by hand from the hooked layer: the 8 channels of highest mean activation,
    each min-max normalised at input size, mask the input; the map is
    ReLU(sum_k p_target(x * H_k) A_k) over them (the authors' weighting)."""
    model, x = resnet_and_samples
    x = x[:1]
    fast = Explainer(model, "scorecam", channels=8)(x)
    acts = {}
    layer = dict(model.net.named_modules())[fast.layer]
    handle = layer.register_forward_hook(lambda m, i, o: acts.setdefault("a", o.detach()))
    with torch.no_grad():
        model.net(x)
    handle.remove()
    a = acts["a"].float()
    chosen = a[0, a.mean((2, 3)).topk(8, 1).indices[0]]                      # (8, h, w)
    up = F.interpolate(chosen[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
    lo, hi = up.amin((1, 2, 3), keepdim=True), up.amax((1, 2, 3), keepdim=True)
    with torch.no_grad():
        p = model.net(x * (up - lo) / (hi - lo)).softmax(1)[:, int(fast.targets[0])]
    expected = F.relu((p[:, None, None] * chosen).sum(0))
    assert torch.allclose(fast.raw[0, 0], expected, atol=1e-5)


def test_progress_is_reported_to_a_listener_and_silent_without_one(resnet_and_samples):
    model, x = resnet_and_samples
    seen = []

    @contextlib.contextmanager
    def listener(description, total):
        seen.append([description, total, 0])
        yield lambda n: seen[-1].__setitem__(2, seen[-1][2] + n)

    previous = progress.set_listener(listener)
    try:
        Explainer(model, "scorecam", channels=16, batch_size=5)(x[:3])
    finally:
        progress.set_listener(previous)
    assert seen == [["scorecam: masked inputs", 48, 48]]
    assert not progress.listening()
