"""The attention family's architectures: they build for small inputs and at 224 px, their
attention modules compute what the papers define, and a couple of SGD steps lower their loss
(Attend and Rectify's with its inter-head regulariser)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from explain.losses import LOSSES
from explain.models import ARCHS, build, get_arch
from explain.models.attend_rectify import head_overlap
from explain.models.ran import MaskActivation, ResidualAttentionNet, ran_defaults

FAMILY = ["ran", "ran92", "cbam_resnet", "se_resnet", "attend_rectify", "bayes_abn_resnet"]

# Small widths/depths keep the tests fast; the layouts (stems, stages, poolings) are the real ones.
TINY = {
    28: {"ran": {"widths": (8, 16, 16)}, "ran92": {"widths": (8, 16, 16)},
         "cbam_resnet": {"depths": (1, 1, 1), "widths": (8, 16, 16)},
         "se_resnet": {"depths": (1, 1, 1), "widths": (8, 16, 16)},
         "attend_rectify": {"depths": (1, 1, 1), "widths": (8, 16, 16), "heads": 2},
         "bayes_abn_resnet": {"depths": (1, 1, 1), "widths": (8, 16, 16)}},
    224: {"ran": {"widths": (8, 8, 16, 16)}, "ran92": {"widths": (8, 8, 16, 16)},
          "cbam_resnet": {"depths": (1, 1, 1, 1), "widths": (4, 4, 8, 8)},
          "se_resnet": {"depths": (1, 1, 1, 1), "widths": (4, 4, 8, 8)},
          "attend_rectify": {"depths": (1, 1, 1, 1), "widths": (8, 8, 16, 16), "heads": 2},
          "bayes_abn_resnet": {"depths": (1, 1, 1, 1), "widths": (4, 4, 8, 8)}},
}
CHANNELS = {28: 1, 224: 3}


def tiny(arch: str, size: int, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(arch, get_arch(arch).kwargs(10, CHANNELS[size], size,
                                             **{**TINY[size][arch], **overrides}))


def map_modules(arch: str, net: torch.nn.Module) -> tuple[list[torch.Tensor], list]:
    """Hooks that collect the outputs of every module the native maps are read from (the
    list fills on the next forward pass) and the hook handles."""
    outs: list[torch.Tensor] = []
    layers = next(iter(get_arch(arch).native_layers(net).values()))
    modules = dict(net.named_modules())
    hooks = [modules[n].register_forward_hook(lambda m, i, o: outs.append(o)) for n in layers]
    return outs, hooks


@pytest.mark.parametrize("size", [28, 224])
@pytest.mark.parametrize("arch", FAMILY)
def test_builds_and_runs_at_both_input_sizes(arch, size):
    net = tiny(arch, size).eval()
    x = torch.randn(2, CHANNELS[size], size, size)
    outs, hooks = map_modules(arch, net)
    with torch.no_grad():
        logits = net(x)
    for h in hooks:
        h.remove()
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert outs, f"{arch} exposes no native map module"
    for o in outs:
        assert o.shape[0] == 2 and torch.isfinite(o).all()
        if arch != "se_resnet":
            assert o.ndim == 4 and 1 <= o.shape[-1] <= size // (1 if size <= 64 else 4)
        assert o.min() >= 0 and o.max() <= 1 + 1e-6


@pytest.mark.parametrize("arch,expected", [
    ("ran", 3), ("ran92", 6), ("cbam_resnet", 3), ("se_resnet", 3), ("attend_rectify", 3),
    ("bayes_abn_resnet", 1)])
def test_one_map_per_attention_module(arch, expected):
    """RAN: one mask per attention module; CBAM/SE: one per block; A&R: one per module."""
    net = tiny(arch, 28)
    assert all(len(v) == expected for v in get_arch(arch).native_layers(net).values())


def test_attention56_and_92_match_the_paper_sizes():
    """Attention-56 has 31.9M parameters in the paper, Attention-92 51.3M (ImageNet, 1000
    classes); the masks sit at 56/28/14 px of a 224 px input."""
    counts = {}
    for depths in [(1, 1, 1, 0), (1, 2, 3, 0)]:
        net = ResidualAttentionNet(**ran_defaults(224, depths), num_classes=1000)
        counts[depths] = sum(p.numel() for p in net.parameters()) / 1e6
    assert counts[(1, 1, 1, 0)] == pytest.approx(31.9, rel=0.02)
    assert counts[(1, 2, 3, 0)] == pytest.approx(51.3, rel=0.04)
    net = tiny("ran", 224).eval()
    outs, hooks = map_modules("ran", net)
    with torch.no_grad():
        net(torch.randn(1, 3, 224, 224))
    assert [o.shape[-1] for o in outs] == [56, 28, 14]


def test_ran_mask_activations():
    x = torch.randn(2, 8, 5, 5) * 3
    mixed, channel, spatial = (MaskActivation(k)(x) for k in ("mixed", "channel", "spatial"))
    assert torch.allclose(mixed, torch.sigmoid(x))
    assert torch.allclose(channel.norm(dim=1), torch.ones(2, 5, 5), atol=1e-5)
    # spatial: each channel standardised over its positions -> logits of mean 0
    assert torch.allclose(torch.logit(spatial).mean(dim=(2, 3)), torch.zeros(2, 8), atol=1e-4)
    with pytest.raises(ValueError):
        MaskActivation("softmax")
    for kind in ("channel", "spatial"):
        net = tiny("ran", 28, activation=kind).eval()
        assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_head_overlap_is_zero_for_disjoint_heads_and_grows_with_overlap():
    disjoint = torch.zeros(1, 2, 4, 4)
    disjoint[0, 0, :2] = 1 / 8
    disjoint[0, 1, 2:] = 1 / 8
    same = torch.full((1, 2, 4, 4), 1 / 16)
    assert head_overlap(disjoint).item() == 0.0
    assert head_overlap(same).item() > 0
    logits = torch.randn(1, 2, 16, requires_grad=True)
    head_overlap(logits.softmax(-1).view(1, 2, 4, 4)).backward()
    assert logits.grad.abs().sum() > 0


def test_attend_rectify_gates_and_heads():
    net = tiny("attend_rectify", 28).eval()
    with torch.no_grad():
        out = net.forward_parts(torch.randn(3, 1, 28, 28))
    assert out.outputs.shape == (3, 4, 10) and out.gates.shape == (3, 4)
    assert torch.allclose(out.gates.sum(1), torch.ones(3))
    mix = (F.log_softmax(out.outputs, 2) * out.gates[:, :, None]).sum(1)
    assert torch.allclose(out.logits, mix, atol=1e-6)
    # a log-probability mixture: every class's value is at most 0
    assert (out.logits <= 0).all()


@pytest.mark.parametrize("arch", FAMILY)
def test_two_training_steps_lower_the_loss(arch):
    net = tiny(arch, 28).train()
    loss_fn = LOSSES[ARCHS[arch].loss]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 1, 28, 28, generator=g)
    y = torch.arange(16) % 10
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)

    def loss_now() -> tuple[torch.Tensor, dict]:
        torch.manual_seed(2)  # the same dropout masks (Bayesian ABN) at every evaluation
        loss, logits, parts = loss_fn(net, x, y, {})
        assert logits.shape == (16, 10)
        return loss, parts

    first, parts = loss_now()
    if arch == "attend_rectify":
        assert parts["reg"] > 0 and math.isclose(first.item(), parts["nll"] + parts["reg"],
                                                 rel_tol=1e-4)
    for _ in range(2):
        loss, _ = loss_now()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after, _ = loss_now()
    assert after.item() < first.item()


def test_attend_rectify_regulariser_is_trained():
    """The regulariser's gradient reaches the attention heads' convolutions."""
    net = tiny("attend_rectify", 28).train()
    out = net.forward_parts(torch.randn(4, 1, 28, 28))
    out.reg.backward()
    assert all(m.att.weight.grad.abs().sum() > 0 for m in net.attention)
    assert net.fc.weight.grad is None or net.fc.weight.grad.abs().sum() == 0
