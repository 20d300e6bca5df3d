"""The CAM variants the other toolkits have (HiResCAM, Eigen-CAM, Ablation-CAM), FullGrad,
SmoothGrad through captum's NoiseTunnel, and the ROAD metric, each against its definition
on a tiny model."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explain.cli.main import main
from explain.errors import ExplainError
from explain.methods import Explainer
from explain.metrics.road import impute, road_scores
from explain.preprocess import InputSpec
from explain.registry import Model


class Tiny(nn.Module):
    """conv (bias) -> BN -> ReLU(inplace) -> conv `feat` -> ReLU -> GAP -> fc: a CAM head."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.feat = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1, bias=False), nn.ReLU())
        self.fc = nn.Linear(5, classes)

    def forward(self, x):
        return self.fc(self.feat(self.relu(self.bn(self.conv(x)))).mean((2, 3)))


@pytest.fixture
def tiny() -> Model:
    torch.manual_seed(0)
    net = Tiny().eval()
    g = torch.Generator().manual_seed(1)
    net.bn.running_mean, net.bn.running_var = torch.randn(4, generator=g) * 0.3, torch.rand(4, generator=g) + 0.5
    net.bn.weight.data, net.bn.bias.data = torch.rand(4, generator=g) + 0.5, torch.randn(4, generator=g)
    return Model("tiny", net, InputSpec(size=(12, 12), channels=1), ["a", "b", "c"], cam_layer="feat")


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(2))


def feat_and_logits(model: Model, x: torch.Tensor, layer: str = "feat"):
    seen = []
    h = dict(model.net.named_modules())[layer].register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        logits = model.net(x)
    finally:
        h.remove()
    return seen[0], logits


def test_hirescam_is_gradient_times_activation_summed_over_channels(tiny, x):
    """Before the last ReLU the gradient varies over positions (at `feat`, right before
    GAP -> linear, it would not, and HiResCAM would equal Grad-CAM)."""
    e = Explainer(tiny, "hirescam", layer="feat.0")(x, targets=1)
    a, logits = feat_and_logits(tiny, x, "feat.0")
    g = torch.autograd.grad(logits[:, 1].sum(), a)[0]
    assert torch.allclose(e.raw, torch.relu((g * a).sum(1, keepdim=True)).detach(), atol=1e-6)
    assert not torch.allclose(e.raw, Explainer(tiny, "gradcam", layer="feat.0")(x, targets=1).raw)


def test_ablation_cam_weights_under_a_linear_head_have_a_closed_form(tiny, x):
    """With GAP -> linear after the layer, ablating channel k lowers y_c by W_ck mean(A_k):
    w_k = W_ck mean(A_k) / y_c."""
    e = Explainer(tiny, "ablationcam", batch_size=2)(x, targets=[0, 2])
    a, logits = feat_and_logits(tiny, x)
    t = torch.tensor([0, 2])
    y = logits.gather(1, t[:, None])
    w = tiny.net.fc.weight[t] * a.mean((2, 3)) / y                    # (B, K)
    expected = torch.relu((w[:, :, None, None] * a).sum(1, keepdim=True))
    assert torch.allclose(e.raw, expected.detach(), atol=1e-5)


def test_eigen_cam_of_rank_one_activations_is_the_centred_pattern():
    """Activations c_k s(x, y) (every channel the same pattern): the first principal
    component is s minus its mean, with the sign of the mean activation."""
    conv = nn.Conv2d(1, 6, 1, bias=False)
    conv.weight.data = torch.tensor([0.5, 1.0, 2.0, -0.2, 0.7, 1.5]).view(6, 1, 1, 1)
    net = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2)).eval()
    x = torch.randn(2, 1, 9, 9, generator=torch.Generator().manual_seed(4))
    e = Explainer(net, "eigencam", layer="0")(x)
    s = x - x.mean((2, 3), keepdim=True)
    expected = torch.relu(s)
    scale = e.raw.flatten(1).amax(1) / expected.flatten(1).amax(1)
    assert torch.allclose(e.raw, expected * scale.view(-1, 1, 1, 1), atol=1e-4)
    conv.weight.data = -conv.weight.data  # the sign follows the mean activation
    flipped = Explainer(net, "eigencam", layer="0")(x).raw
    assert torch.allclose(flipped / flipped.flatten(1).amax(1).view(-1, 1, 1, 1),
                          torch.relu(-s) / torch.relu(-s).flatten(1).amax(1).view(-1, 1, 1, 1),
                          atol=1e-4)


def psi(t, size):
    t = t.abs()
    t = t - t.flatten(1).min(1).values.view(-1, 1, 1, 1)
    t = t / (t.flatten(1).max(1).values.view(-1, 1, 1, 1) + 1e-6)
    return F.interpolate(t, size=size, mode="bilinear", align_corners=True).sum(1, keepdim=True)


def test_fullgrad_is_the_full_gradient_decomposition(tiny, x):
    net = tiny.net
    e = Explainer(tiny, "fullgrad")(x, targets=2)
    xg = x.clone().requires_grad_(True)
    z1 = net.conv(xg)
    z2 = net.bn(z1)
    logits = net.fc(net.feat(torch.relu(z2)).mean((2, 3)))
    gx, g1, g2 = torch.autograd.grad(logits[:, 2].sum(), [xg, z1, z2])
    bn = net.bn
    b2 = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)
    # a ReLU network is the sum of its input- and bias-gradient terms (completeness)
    parts = (gx * x).flatten(1).sum(1) + (g1 * net.conv.bias.view(1, -1, 1, 1)).flatten(1).sum(1) \
        + (g2 * b2.view(1, -1, 1, 1)).flatten(1).sum(1) + net.fc.bias[2]
    assert torch.allclose(parts, logits[:, 2], atol=1e-4)
    expected = psi(gx * x, (12, 12)) + psi(g1 * net.conv.bias.view(1, -1, 1, 1), (12, 12)) \
        + psi(g2 * b2.view(1, -1, 1, 1), (12, 12))
    assert torch.allclose(e.raw, expected.detach(), atol=1e-5)


def test_smoothgrad_is_saliency_averaged_over_captums_noisy_copies(tiny, x):
    torch.manual_seed(7)
    e = Explainer(tiny, "smoothgrad", nt_samples=5, nt_stdev=0.2)(x, targets=1)
    torch.manual_seed(7)
    stdev = 0.2 * float(x.max() - x.min())
    noisy = (x.repeat_interleave(5, 0) + torch.normal(0, torch.full((10, 1, 12, 12), stdev))
             ).requires_grad_(True)
    g = torch.autograd.grad(tiny.net(noisy)[:, 1].sum(), noisy)[0].abs()
    expected = g.view(2, 5, 1, 12, 12).mean(1)
    assert torch.allclose(e.raw, expected, atol=1e-6)
    plain = Explainer(tiny, "saliency")(x, targets=1)
    assert not torch.allclose(e.raw, plain.raw)
    ig = Explainer(tiny, "integrated_gradients", steps=4, noise_tunnel="vargrad", nt_samples=3)(x)
    assert torch.isfinite(ig.raw).all()
    with pytest.raises(ExplainError, match="'blur': choose smoothgrad") as err:
        Explainer(tiny, "saliency", noise_tunnel="blur")(x)
    assert err.value.param == "noise_tunnel"


def test_imputation_solves_the_neighbour_mean_system():
    """Every removed pixel is the weighted mean (1/6 direct, 1/12 diagonal) of the
    neighbours it has, removed or not: checked on the linear system built by hand."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, generator=g)
    removed = torch.rand(2, 1, 5, 6, generator=g) < 0.6
    out = impute(x, removed)
    kernel = {(-1, -1): 1 / 12, (-1, 0): 1 / 6, (-1, 1): 1 / 12, (0, -1): 1 / 6, (0, 1): 1 / 6,
              (1, -1): 1 / 12, (1, 0): 1 / 6, (1, 1): 1 / 12}
    for n in range(2):
        unknown = [(i, j) for i in range(5) for j in range(6) if removed[n, 0, i, j]]
        index = {p: k for k, p in enumerate(unknown)}
        a, b = torch.zeros(len(unknown), len(unknown)), torch.zeros(len(unknown), 3)
        for k, (i, j) in enumerate(unknown):
            for (di, dj), w in kernel.items():
                if 0 <= i + di < 5 and 0 <= j + dj < 6:
                    a[k, k] += w
                    if (i + di, j + dj) in index:
                        a[k, index[(i + di, j + dj)]] -= w
                    else:
                        b[k] += w * x[n, :, i + di, j + dj]
        solved = torch.linalg.solve(a, b)
        assert torch.allclose(torch.stack([out[n, :, i, j] for i, j in unknown]), solved, atol=1e-4)
    assert torch.equal(out[~removed.expand_as(x)], x[~removed.expand_as(x)])  # known kept
    ramp = torch.arange(40.0).view(1, 1, 5, 8) * 0.5 + torch.arange(5.0).view(1, 1, 5, 1)
    hole = torch.zeros(1, 1, 5, 8, dtype=torch.bool)
    hole[..., 1:4, 2:6] = True  # inside: the neighbour mean of a linear ramp is the ramp
    assert torch.allclose(impute(ramp, hole), ramp, atol=1e-4)
    big = torch.zeros(1, 1, 70, 70, dtype=torch.bool)
    big[..., 5:65, 10:60] = True  # above 32 px: the coarse start, the same solution
    ramp = torch.linspace(0, 1, 70).view(1, 1, 1, 70).expand(1, 1, 70, 70).contiguous()
    assert torch.allclose(impute(ramp, big), ramp, atol=1e-3)


def test_road_removes_pixels_in_map_order_and_scores_the_imputed_images(tiny, x):
    net = tiny.net
    g = torch.Generator().manual_seed(3)
    maps = torch.rand(2, 1, 12, 12, generator=g)
    t = torch.tensor([0, 1])
    forward = lambda z: net(z)  # noqa: E731
    morf = road_scores(forward, x, maps, t, "morf", percents=(25, 50), noise=0.0)
    lerf = road_scores(forward, x, maps, t, "lerf", percents=(25, 50), noise=0.0)
    order = maps.flatten(1).argsort(1, descending=True)
    for j, pct in enumerate((25, 50)):
        k = round(pct / 100 * 144)
        for scores, removed_idx in ((morf, order[:, :k]), (lerf, order[:, 144 - k:])):
            removed = torch.zeros(2, 144, dtype=torch.bool)
            removed.scatter_(1, removed_idx, True)
            filled = impute(x, removed.view(2, 1, 12, 12))
            expected = net(filled).softmax(1).gather(1, t[:, None])[:, 0]
            assert torch.allclose(scores[:, j], expected.detach(), atol=1e-5)
    nan = road_scores(forward, x, torch.full_like(maps, float("nan")), t, "morf", (50,))
    assert torch.isnan(nan).all()


def test_eval_reports_road_beside_deletion_and_insertion(tmp_path, capsys, tiny_abn_dir):
    code = main(["eval", "--model", str(tiny_abn_dir), "--data", "fashion-mnist", "--methods",
                 "gradcam,eigencam", "--limit", "4", "--sanity-images", "0", "--road",
                 "--out", str(tmp_path / "e"), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    for m in ("gradcam", "eigencam"):
        for k in ("road_morf", "road_lerf", "deletion_auc", "insertion_auc"):
            assert 0 <= report["metrics"][m][k]["mean"] <= 1
    assert report["settings"]["road_percents"] == [10, 20, 30, 40, 50, 60, 70, 80, 90]
