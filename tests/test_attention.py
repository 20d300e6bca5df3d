"""Self-attention maps: rollout and gradient-weighted attention against hand-computed cases,
raw attention and token Grad-CAM against their definitions on the project's ViT and on
torchvision's (nn.MultiheadAttention asked for its weights by hooks), the Non-local and
attention-augmented ResNets' query rows, hook hygiene, and every bad input one clear line."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from PIL import Image

from conftest import SAMPLES
from explain.checkpoint import save_checkpoint
from explain.cli.main import main
from explain.errors import ExplainError
from explain.methods import Explainer, select
from explain.methods.attention import gradient_rollout, rollout
from explain.models import build, get_arch
from explain.models.aa_resnet import AugmentedConv
from explain.preprocess import InputSpec
from explain.registry import Model, arch_model
from explain.tokens import token_grid

METHODS = ("attention", "rollout", "grad_attention", "gradcam")
TINY = {"vit": {"image_size": 16, "patch": 4, "dim": 16, "depth": 2, "heads": 2},
        "nonlocal_resnet": {"depths": (1, 1, 1), "widths": (4, 8, 8)},
        "aa_resnet": {"depths": (2, 2, 2), "widths": (4, 8, 8), "image_size": 16, "aa_stages": (2, 3)}}

# the hand-computed case: 2 layers, 2 heads, 3 tokens (CLS + 2)
H1 = torch.tensor([[[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6]],
                   [[0.7, 0.1, 0.2], [0.4, 0.4, 0.2], [0.3, 0.3, 0.4]]])[None]
H2 = torch.tensor([[[0.2, 0.4, 0.4], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]],
                   [[0.4, 0.2, 0.4], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6]]])[None]


def n_hooks(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in net.modules())


def first_output(module: nn.Module, run, inputs: bool = False):
    """(run()'s result, `module`'s first output (or first input) while it ran)."""
    seen = []
    if inputs:
        h = module.register_forward_pre_hook(lambda m, i: seen.append(i[0]))
    else:
        h = module.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        return run(), seen[0]
    finally:
        h.remove()


def randomise_norms(net: nn.Module) -> None:
    """Untrained BatchNorms are identities and a Non-local block's last one is zero: give
    them random statistics so that the maps vary and the blocks change their input."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.2
            m.running_mean, m.running_var = torch.randn(n, generator=g) * 0.2, torch.rand(n, generator=g) + 0.5


def tiny(arch: str, size: int = 16) -> Model:
    torch.manual_seed(0)
    net = build(arch, get_arch(arch).kwargs(10, 1, size, **TINY[arch])).eval()
    randomise_norms(net)
    spec = InputSpec(size=(size, size), channels=1, mean=(0.3,), std=(0.3,))
    return arch_model(arch, net, arch, spec, [str(i) for i in range(10)])


def tv_vit(image_size: int = 32, classes: int = 5) -> nn.Module:
    """torchvision's VisionTransformer, small, with a random head (torchvision's is zero)."""
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(image_size=image_size, patch_size=8, num_layers=2,
                                               num_heads=2, hidden_dim=16, mlp_dim=32,
                                               num_classes=classes)
    nn.init.normal_(net.heads.head.weight, std=0.5)
    return net.eval()


@pytest.fixture(scope="module")
def x16() -> torch.Tensor:
    return torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def test_rollout_of_the_hand_computed_case():
    # mean fusion: A_hat = 0.5 mean(heads) + 0.5 I (rows already sum to 1); R = A2_hat A1_hat
    a1 = [[0.8, 0.0875, 0.1125], [0.15, 0.75, 0.1], [0.1, 0.15, 0.75]]
    a2_cls = [0.65, 0.15, 0.2]
    cls = [sum(a2_cls[k] * a1[k][j] for k in range(3)) for j in range(3)]
    assert cls == pytest.approx([0.5625, 0.199375, 0.238125])
    r = rollout([H1, H2])
    assert r[0, 0].tolist() == pytest.approx(cls, abs=1e-6)
    assert r[0].sum(1).tolist() == pytest.approx([1, 1, 1])
    # max fusion: rows of 0.5 max + 0.5 I sum to 1.1 in both layers' CLS rows and layer 1
    r = rollout([H1, H2], fusion="max")
    assert r[0, 0].tolist() == pytest.approx([0.665 / 1.21, 0.2775 / 1.21, 0.2675 / 1.21], abs=1e-6)
    # discard 25%: the 2 lowest of 9 weights (and their ties) go before the identity is added
    r = rollout([H1, H2], discard=0.25)
    expected = [0.65 * 0.8 / 0.9125 + 0.15 * 0.15 / 0.9,
                0.15 * 0.75 / 0.9 + 0.2 * 0.15 / 0.9,
                0.65 * 0.1125 / 0.9125 + 0.2 * 0.75 / 0.9]
    assert r[0, 0].tolist() == pytest.approx(expected, abs=1e-6)
    r = rollout([H1, H2], fusion="min")
    assert r[0, 0].sum() == pytest.approx(1.0) and not torch.allclose(r, rollout([H1, H2]))
    for kw in ({}, {"fusion": "max"}, {"discard": 0.25}):  # one row, from the left: the same
        full = rollout([H1, H2], **kw)
        for q in range(3):
            one = rollout([H1, H2], rows=torch.tensor([q]), **kw)
            assert one.shape == (1, 1, 3) and torch.allclose(one[0, 0], full[0, q], atol=1e-6)


def test_gradient_rollout_of_the_hand_computed_case():
    g1 = torch.tensor([1.0, -1.0]).view(1, 2, 1, 1).expand_as(H1)  # head b of layer 1 drops
    g2 = torch.full_like(H2, 2.0)
    r = gradient_rollout([H1, H2], [g1, g2])
    # A1_bar = 0.5 H1a, A2_bar = 2 mean(H2); CLS row of (I + A2_bar)(I + A1_bar)
    assert r[0, 0].tolist() == pytest.approx([2.1, 1.1, 1.3], abs=1e-6)
    for q in range(3):
        one = gradient_rollout([H1, H2], [g1, g2], rows=torch.tensor([q]))
        assert torch.allclose(one[0, 0], r[0, q], atol=1e-6)


@pytest.mark.parametrize("fusion, discard", [("mean", 0.0), ("max", 0.0), ("min", 0.3)])
def test_rollout_fused_in_the_hooks_equals_rollout_of_the_per_head_weights(x16, fusion, discard):
    """The capture keeps only the fused heads (B, 1, T, T) for rollout; the map is the
    rollout of the full per-head weights, on the project's ViT and on torchvision's
    nn.MultiheadAttention path."""
    model = tiny("vit")
    kept = []
    hooks = [b.attn.softmax.register_forward_hook(lambda m, i, o: kept.append(o))
             for b in model.net.blocks]
    with torch.no_grad():
        model.net(x16)
    for h in hooks:
        h.remove()
    ex = Explainer(model, "rollout", head_fusion=fusion, discard_ratio=discard)
    e = ex(x16)
    assert set(w.shape for w in ex.method._weights.values()) == {(2, 1, 17, 17)}
    want = rollout(kept, fusion, discard)[:, 0, 1:].reshape(2, 1, 4, 4)
    assert torch.allclose(e.raw, want, atol=1e-6)
    net, x = tv_vit(), torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    full = Explainer(net, "attention")
    full(x)
    want = rollout(list(full.method._weights.values()), fusion, discard)[:, 0, 1:]
    assert torch.allclose(Explainer(net, "rollout", head_fusion=fusion, discard_ratio=discard)(x).raw,
                          want.reshape(2, 1, 4, 4), atol=1e-6)


@pytest.mark.parametrize("tokens, size, grid", [
    (197, (224, 224), (1, 14, 14)),      # ViT-B/16: CLS + 14 x 14
    (196, (224, 224), (0, 14, 14)),      # no CLS
    (198, (224, 224), (2, 14, 14)),      # DeiT: CLS + distillation token
    (1 + 14 * 15, (224, 240), (1, 14, 15)),
    (50, (28, 28), (1, 7, 7))])
def test_token_grids_are_inferred(tokens, size, grid):
    g = token_grid(tokens, size)
    assert (g.prefix, g.h, g.w) == grid


def test_token_counts_without_a_grid_are_refused():
    with pytest.raises(ExplainError, match="80 tokens, which are not a patch grid") as err:
        token_grid(80, (28, 28))
    assert err.value.param == "layer"


def test_raw_attention_is_the_query_row_of_the_softmax(x16):
    model = tiny("vit")
    net = model.net
    e, a = first_output(net.blocks[1].attn.softmax, lambda: Explainer(model, "attention")(x16))
    q = Explainer(model, "attention", query=(13, 2))(x16)
    assert e.layer == "blocks.1.attn.softmax" and e.raw.shape == (2, 2, 4, 4)
    assert torch.allclose(e.raw, a[:, :, 0, 1:].reshape(2, 2, 4, 4))  # the CLS row
    assert "query" not in e.extras
    # pixel (13, 2) lies in patch row 0, column 3 of the 4 x 4 grid: token 1 + 3
    assert torch.allclose(q.raw, a[:, :, 4, 1:].reshape(2, 2, 4, 4))
    assert q.extras["query"].tolist() == [[13.0, 2.0]] * 2


def test_torchvision_vit_weights_and_gradients_match_a_hand_written_forward():
    """nn.MultiheadAttention with need_weights=False: the hooks ask for the per-head weights
    and take the gradient where torch multiplied them with V, and the model's output is
    unchanged."""
    net = tv_vit()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    attns = []
    with torch.enable_grad():
        t = net._process_input(x)
        t = torch.cat([net.class_token.expand(2, -1, -1), t], 1) + net.encoder.pos_embedding
        for layer in net.encoder.layers:
            mha, y = layer.self_attention, layer.ln_1(t)
            q, k, v = (z.view(2, 17, 2, 8).transpose(1, 2)
                       for z in F.linear(y, mha.in_proj_weight, mha.in_proj_bias).chunk(3, -1))
            a = (q @ k.transpose(-2, -1) / math.sqrt(8)).softmax(-1)
            attns.append(a)
            t = t + mha.out_proj((a @ v).transpose(1, 2).reshape(2, 17, 16))
            t = t + layer.mlp(layer.ln_2(t))
        logits = net.heads(net.encoder.ln(t)[:, 0])
        target = logits.argmax(1)
        grads = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), attns)
    before = n_hooks(net)
    raw = Explainer(net, "attention")(x)
    assert torch.allclose(raw.logits, logits.detach(), atol=1e-5)
    assert torch.allclose(raw.raw, attns[1][:, :, 0, 1:].detach().reshape(2, 2, 4, 4), atol=1e-6)
    r = torch.eye(17).expand(2, -1, -1)
    for a, g in zip(attns, grads):
        r = r + (g * a.detach()).clamp(min=0).mean(1) @ r
    e = Explainer(net, "grad_attention")(x)
    assert torch.allclose(e.raw, r[:, 0, 1:].reshape(2, 1, 4, 4), atol=1e-5)
    assert e.raw.max() > 0 and n_hooks(net) == before
    with torch.no_grad():
        assert torch.equal(net(x), net(x))  # and the network answers as before
        _, w = net.encoder.layers[0].self_attention(t[:, :3], t[:, :3], t[:, :3])
    assert w.shape == (2, 3, 3)  # nothing left asking for per-head weights


@pytest.mark.parametrize("which", ["vit", "torchvision"])
def test_token_gradcam_equals_gradcam_from_the_definition(which):
    """Tokens at the last block's input norm, CLS dropped, on the patch grid; alpha_k = mean
    of dY/dA_k; ReLU(sum_k alpha_k A_k). No reshape function given."""
    if which == "vit":
        model, x, expected_layer = tiny("vit"), torch.randn(2, 1, 16, 16), "blocks.1.norm1"
        net, grid = model.net, 4
    else:
        net = model = tv_vit()
        x, expected_layer, grid = torch.randn(2, 3, 32, 32), "encoder.layers.encoder_layer_1.ln_1", 4
    e = Explainer(model, "gradcam")(x, targets=1)
    assert e.layer == expected_layer
    logits, a = first_output(dict(net.named_modules())[expected_layer], lambda: net(x))
    g = torch.autograd.grad(logits[:, 1].sum(), a)[0]
    a = a[:, 1:].transpose(1, 2).reshape(2, -1, grid, grid)
    g = g[:, 1:].transpose(1, 2).reshape(2, -1, grid, grid)
    expected = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    assert torch.allclose(e.raw, expected.detach(), atol=1e-5) and e.raw.max() > 0


def small_swin() -> nn.Module:
    torch.manual_seed(0)
    net = torchvision.models.swin_transformer.SwinTransformer(
        patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=[2, 2],
        num_classes=5)
    nn.init.normal_(net.head.weight, std=0.5)
    return net.eval()


def test_swin_gradcam_reads_channels_last_stages_and_refuses_attention_maps():
    net = small_swin()
    x = torch.randn(2, 3, 16, 16)
    e = Explainer(net, "gradcam", layer="features.1")(x, targets=2)  # (B, 4, 4, 8), channels last
    logits, a = first_output(net.features[1], lambda: net(x))
    g = torch.autograd.grad(logits[:, 2].sum(), a)[0].permute(0, 3, 1, 2)
    a = a.permute(0, 3, 1, 2)
    expected = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    assert e.raw.shape == (2, 1, 4, 4) and torch.allclose(e.raw, expected.detach(), atol=1e-5)
    assert Explainer(net, "gradcam")(x).maps.shape == (2, 1, 16, 16)  # default layer
    with pytest.raises(ExplainError, match="attends within windows.*ShiftedWindowAttention"):
        Explainer(net, "rollout")(x)


def test_nonlocal_map_of_a_query_is_the_softmax_row_computed_by_hand(x16):
    model = tiny("nonlocal_resnet")
    block = model.net.layer2.non_local
    e, feats = first_output(block, lambda: Explainer(
        model, "attention", layer="layer2.non_local.softmax", query=(5, 12))(x16), inputs=True)
    feats = feats[0:1]                                          # (1, 8, 8, 8): an 8 x 8 grid
    theta, phi = block.theta(feats).flatten(2)[0], block.phi(feats).flatten(2)[0]  # (C', 64)
    query = (12 * 8 // 16) * 8 + 5 * 8 // 16                       # row 6, column 2
    logits = torch.stack([(theta[:, query] * phi[:, j]).sum() for j in range(64)])
    row = torch.exp(logits - logits.max()) / torch.exp(logits - logits.max()).sum()
    assert e.raw.shape == (2, 1, 8, 8)
    assert torch.allclose(e.raw[0, 0], row.detach().view(8, 8), atol=1e-6)
    assert e.extras["query"][0].tolist() == [5.0, 12.0]
    maps = Explainer(model, "attention").all_maps(x16)
    assert list(maps) == ["attention@layer2", "attention@layer3", "attention@layer3-received"]
    centre = Explainer(model, "attention")(x16)                     # default: the image centre
    assert centre.extras["query"][0].tolist() == [8.0, 8.0] and centre.layer == "layer3.non_local.softmax"


def test_augmented_conv_logits_with_relative_positions_by_hand():
    torch.manual_seed(0)
    conv = AugmentedConv(6, 8, dk=4, dv=4, heads=2, extent=4).eval()
    x = torch.randn(1, 6, 3, 4)
    out, a = first_output(conv.softmax, lambda: conv(x))
    q, k, _ = conv.qkv(x)[0].split([4, 4, 4])
    q, k = q.view(2, 2, 3, 4) / math.sqrt(2), k.view(2, 2, 3, 4)
    logits = torch.zeros(2, 12, 12)
    for n in range(2):
        for i in range(3):
            for j in range(4):
                for kk in range(3):
                    for ll in range(4):
                        qv = q[n, :, i, j]
                        logits[n, i * 4 + j, kk * 4 + ll] = (qv @ k[n, :, kk, ll]
                                                             + qv @ conv.rel_h[kk - i + 3]
                                                             + qv @ conv.rel_w[ll - j + 3])
    assert torch.allclose(a[0], logits.softmax(-1).detach(), atol=1e-5)
    assert out.shape == (1, 8, 3, 4)


def test_attention_augmented_heads_for_a_query(x16):
    model = tiny("aa_resnet")
    e = Explainer(model, "attention", query=(0, 0))(x16)
    assert e.layer == "layer3.1.conv1.softmax" and e.raw.shape == (2, 4, 4, 4)
    maps = Explainer(model, "attention", layer="layer3.1.conv1.softmax").all_maps(x16)
    assert list(maps) == ["attention"] + [f"attention@head{h}" for h in range(4)] + \
        ["attention@received"]
    for h in range(4):
        assert torch.allclose(maps[f"attention@head{h}"].raw[:, 0], maps["attention"].raw[:, h])


@pytest.mark.parametrize("arch", ["vit", "nonlocal_resnet", "aa_resnet", "torchvision_vit"])
def test_no_hooks_left_after_1000_calls(arch):
    model = tv_vit(16) if arch == "torchvision_vit" else tiny(arch)
    net = model if isinstance(model, nn.Module) else model.net
    x = torch.randn(1, 3 if arch == "torchvision_vit" else 1, 16, 16)
    before = n_hooks(net)
    explainers = [Explainer(model, m) for m in METHODS]
    for i in range(1000):
        explainers[i % len(explainers)](x)
    assert n_hooks(net) == before and torch.is_grad_enabled()
    net.train()
    with pytest.raises(ExplainError, match="outside"):
        Explainer(model, "rollout", query=(99, 0))(x)
    assert n_hooks(net) == before and net.training


@pytest.mark.parametrize("arch", ["vit", "nonlocal_resnet", "aa_resnet", "torchvision_vit"])
def test_every_method_eval_offers_runs_on_the_attention_architectures(arch):
    model = tv_vit(16) if arch == "torchvision_vit" else tiny(arch)
    model = model if isinstance(model, Model) else Model("tv", model, InputSpec(size=(16, 16)), [])
    x = torch.randn(2, model.input.channels, 16, 16)
    options = {"integrated_gradients": {"steps": 4}, "occlusion": {"window": 4, "stride": 4}}
    for method in select(model, "all"):
        e = Explainer(model, method, **options.get(method, {}))(x, targets=[4, 3])
        assert e.maps.shape == (2, 1, 16, 16) and torch.isfinite(e.maps).all(), method


class TimmStyleAttention(nn.Module):
    """timm's Attention with fused attention off: softmax, then `attn_drop` (nn.Dropout)."""

    def __init__(self, dim: int = 16, heads: int = 2):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(0.0)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        a = self.attn_drop((q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(-1))
        return self.proj((a @ v).transpose(1, 2).reshape(b, t, c))


def test_a_factory_declares_where_its_attention_is_read():
    """A user's model (a timm ViT, say) names the module that outputs its softmax weights
    by returning a Model with declared capabilities; DeiT's two leading tokens are found."""
    from explain.capabilities import Capabilities

    class DeiTLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 16, 4, stride=4)
            self.tokens = nn.Parameter(torch.randn(1, 2, 16))  # CLS and distillation
            self.blocks = nn.Sequential(*[nn.Sequential(TimmStyleAttention()) for _ in range(2)])
            self.head = nn.Linear(16, 4)

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.tokens.expand(len(x), -1, -1), t], 1)
            for blk in self.blocks:
                t = t + blk(t)
            return self.head(t[:, 0])
    torch.manual_seed(0)
    net = DeiTLike().eval()
    model = Model("deit-like", net, InputSpec(size=(16, 16)), ["a", "b", "c", "d"],
                  caps=Capabilities(attention="blocks.*.0.attn_drop"))
    x = torch.randn(2, 3, 16, 16)
    e, a = first_output(net.blocks[1][0].attn_drop, lambda: Explainer(model, "attention")(x))
    assert e.layer == "blocks.1.0.attn_drop" and e.raw.shape == (2, 2, 4, 4)
    assert torch.allclose(e.raw, a[:, :, 0, 2:].reshape(2, 2, 4, 4))  # CLS row, 2 tokens dropped
    g = Explainer(model, "grad_attention")(x)
    assert g.raw.shape == (2, 1, 4, 4) and g.raw.max() > 0


def test_select_offers_attention_only_where_there_is_attention(tiny_abn):
    vit = tiny("vit")
    assert select(vit) == ["attention", "gradcam"]
    assert {"attention", "rollout", "grad_attention"} <= set(select(vit, "all"))
    assert not {"attention", "rollout", "grad_attention"} & set(select(tiny_abn, "all"))
    with pytest.raises(ExplainError, match="has no attention layer") as err:
        select(tiny_abn, "gradcam,rollout")
    assert err.value.param == "methods"


def test_bad_inputs_are_one_clear_line_each(x16):
    vit = tiny("vit")
    with pytest.raises(ExplainError, match=r"\(16, 3\) is outside the 16x16 input") as err:
        Explainer(vit, "attention", query=(16, 3))(x16)
    assert err.value.param == "query"
    with pytest.raises(ExplainError, match="'blocks.0.mlp' is not an attention layer.*"
                                           "blocks.0.attn.softmax, blocks.1.attn.softmax"):
        Explainer(vit, "attention", layer="blocks.0.mlp")(x16)

    class Pooled(nn.Module):  # 80 tokens from a 28 x 28 image: no patch grid
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(28 * 28, 80 * 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            t = self.embed(x.flatten(1)).view(-1, 80, 8)
            return self.head(self.attn(t, t, t, need_weights=False)[0].mean(1))
    with pytest.raises(ExplainError, match="80 tokens, which are not a patch grid"):
        Explainer(Pooled(), "rollout")(torch.randn(1, 1, 28, 28))


def save_tv_vit(path, arch: str = "vit_b_16"):
    torch.manual_seed(0)
    net = torchvision.models.get_model(arch, weights=None)
    nn.init.normal_(net.heads.head.weight, std=0.05)
    torch.save(net.state_dict(), path)


def test_cli_runs_rollout_and_gradcam_on_torchvision_vit_b_16(tmp_path, capsys):
    weights = tmp_path / "vit_b_16.pth"
    save_tv_vit(weights)
    out = tmp_path / "out"
    code = main([str(SAMPLES / "chelsea.jpg"), "--model", "torchvision:vit_b_16", "--weights",
                 str(weights), "--methods", "rollout,gradcam", "--out", str(out), "--json",
                 "--save-maps"])
    assert code == 0, capsys.readouterr().err
    record = json.loads(capsys.readouterr().out)
    assert set(record["methods"]) == {"rollout", "gradcam"}
    for m in ("rollout", "gradcam"):
        saved = np.load(record["methods"][m]["map"])
        assert saved.shape == (224, 224) and saved.max() == 1.0 and saved.min() == 0.0
    assert (out / "chelsea_panel.png").is_file()


def test_cli_query_is_in_original_pixels_and_checked_per_image(tmp_path, capsys):
    vit = tiny("vit", size=16)
    ckpt = save_checkpoint(tmp_path / "vit", vit.net, {
        "name": "vit", "arch": "vit", "arch_kwargs": get_arch("vit").kwargs(10, 1, 16, **TINY["vit"]),
        "classes": [str(i) for i in range(10)], "input": vit.input.to_dict(), "data": "none"})
    small = tmp_path / "small.png"
    Image.new("RGB", (40, 20), "gray").save(small)
    photo = SAMPLES / "chelsea.jpg"  # 451 x 300
    code = main([str(photo), str(small), "--model", str(ckpt), "--methods", "attention",
                 "--query", "300,100", "--out", str(tmp_path / "o"), "--json", "--layer",
                 "blocks.1.attn.softmax"])
    captured = capsys.readouterr()
    assert code == 1
    assert "error: query: (300, 100) is outside the part of" in captured.err and "small.png" in captured.err
    failed, record = (json.loads(line) for line in captured.out.splitlines())
    assert failed["image"] == str(small) and "outside" in failed["error"]
    assert record["methods"]["attention"]["query"] == [300, 100]
    assert set(record["methods"]) == {"attention", "attention@head0", "attention@head1",
                                      "attention@received"}
    code = main([str(photo), "--model", str(ckpt), "--methods", "attention", "--layer",
                 "blocks.0.mlp", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "--layer: " in err and "blocks.0.attn.softmax" in err
    code = main([str(photo), "--model", "resnet", "--methods", "rollout", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "--methods: " in err and "no attention layer" in err
