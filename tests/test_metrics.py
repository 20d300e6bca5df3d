"""Metrics on small hand-made cases whose answers are known in advance."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from explain.methods import METHODS, Explainer
from explain.methods.core import Method
from explain.metrics import (auc, box_masks, confidence_change, energy_pointing_game,
                             perturbation_curves, pointing_game, pointing_tolerance,
                             randomisation_units, rank_correlation, sanity_check, ssim, summarise,
                             wr_threshold, wrong_reason)
from explain.metrics.sanity import randomise_
from explain.registry import create_model

from conftest import tiny_checkpoint

S = 32


def square(x0: int, y0: int, side: int = 8, size: int = S) -> torch.Tensor:
    m = torch.zeros(size, size, dtype=torch.bool)
    m[y0:y0 + side, x0:x0 + side] = True
    return m


# --- boxes and pointing games -------------------------------------------------------------

def test_box_masks_clip_and_flag_boxes_outside_the_image():
    masks, ok = box_masks(torch.tensor([[2, 3, 6, 5], [-4, -4, 2, 2], [40, 40, 50, 50],
                                        [5, 5, 5, 9], [float("nan"), 0, 4, 4]]), (S, S))
    assert ok.tolist() == [True, True, False, False, False]
    assert masks[0].sum() == 4 * 2 and masks[0, 3, 2] and not masks[0, 5, 6]
    assert masks[1].sum() == 2 * 2          # clipped to the image
    assert not masks[2:].any()


def test_tolerance_follows_the_protocol():
    assert pointing_tolerance((224, 224)) == 15
    assert pointing_tolerance((64, 64)) == 4


def test_pointing_game_hits_misses_and_skips():
    region = square(10, 10)[None].expand(6, -1, -1).clone()
    maps = torch.zeros(6, 1, S, S)
    maps[0, 0, 12, 12] = 1          # inside the box
    maps[1, 0, 10, 21] = 1          # 4 px right of the box: within tolerance 4
    maps[2, 0, 10, 23] = 1          # 6 px away: miss
    maps[3] = 0.5                   # constant: points nowhere
    maps[4, 0, 0, 0] = float("nan")  # non-finite: skipped
    region[5] = False               # no ground truth: skipped
    hits = pointing_game(maps, region, tolerance=4)
    assert hits[:4].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert torch.isnan(hits[4:]).all()


def test_energy_pointing_game():
    region = square(0, 0, 16)[None].expand(4, -1, -1)
    maps = torch.stack([region.float()[0], torch.ones(S, S), torch.zeros(S, S),
                        torch.full((S, S), float("nan"))])[:, None]
    e = energy_pointing_game(maps, region)
    assert e[0] == pytest.approx(1.0)
    assert e[1] == pytest.approx(0.25) and e[2] == pytest.approx(0.25)  # uniform: area share
    assert torch.isnan(e[3])


def test_wrong_reason_score():
    decoy = square(0, 0, 4)[None].expand(4, -1, -1)
    on_decoy = decoy.float()[0]
    off_decoy = 1 - on_decoy
    maps = torch.stack([on_decoy, off_decoy, torch.zeros(S, S), on_decoy])[:, None]
    t = wr_threshold(maps)
    assert 0 < t < 1
    wr = wrong_reason(maps, decoy, t)
    assert wr[0] == pytest.approx(100.0) and wr[1] == pytest.approx(0.0)
    assert torch.isnan(wr[2])        # constant map: normalisation undefined, skipped
    assert wrong_reason(maps, torch.zeros_like(decoy)).isnan().all()  # empty decoy mask


# --- deletion / insertion, average drop -------------------------------------------------

class RegionModel(nn.Module):
    """Class 0's logit is 10 * (mean of the input over `region` - 1); class 1's is 0."""

    def __init__(self, region: torch.Tensor):
        super().__init__()
        self.register_buffer("region", region.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x[:, 0] * self.region).sum((1, 2)) / self.region.sum()
        return torch.stack([10 * (s - 1), torch.zeros_like(s)], 1)


class ConstantModel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[2.0, 0.0]]).expand(len(x), -1)


@pytest.fixture
def region_case():
    region = square(12, 12)
    x = (2.0 * region.float())[None, None].expand(4, 1, S, S).clone()
    return RegionModel(region), x, region, torch.zeros(4, dtype=torch.long)


def test_deletion_of_a_perfect_map_has_the_known_area(region_case):
    net, x, region, t = region_case
    perfect = region.float()[None, None].expand(4, 1, S, S)
    curves, frac = perturbation_curves(net, x, perfect, t, "deletion", steps=16)
    hi, lo = torch.sigmoid(torch.tensor(10.0)), torch.sigmoid(torch.tensor(-10.0))
    assert frac[0] == 0 and frac[-1] == 1 and len(frac) == 17
    assert curves[:, 0] == pytest.approx(hi.expand(4))
    # the 64 region pixels go in the first step (1024 / 16 = 64 pixels a step)
    expected = float((hi + lo) / 2 / 16 + lo * 15 / 16)
    assert auc(curves, frac) == pytest.approx(torch.full((4,), expected), abs=1e-5)


def test_perfect_map_beats_a_random_one(region_case):
    net, x, region, t = region_case
    perfect = region.float()[None, None].expand(4, 1, S, S)
    noise = torch.rand(4, 1, S, S, generator=torch.Generator().manual_seed(0))
    scores = {}
    for mode in ("deletion", "insertion"):
        for name, m in (("perfect", perfect), ("random", noise)):
            c, frac = perturbation_curves(net, x, m, t, mode, steps=16)
            scores[mode, name] = auc(c, frac).mean().item()
    assert scores["deletion", "perfect"] < scores["deletion", "random"] - 0.3
    assert scores["insertion", "perfect"] > scores["insertion", "random"] + 0.05


def test_average_drop_and_increase(region_case):
    net, x, region, t = region_case
    keep = region.float()[None, None].expand(4, 1, S, S)
    drop, inc = confidence_change(net, x, keep, t)
    assert drop == pytest.approx(torch.zeros(4)) and (inc == 0).all()
    drop, _ = confidence_change(net, x, 1 - keep, t)
    assert drop == pytest.approx(torch.full((4,), 100.0), abs=1e-2)
    drop, _ = confidence_change(net, x, torch.full_like(keep, 0.5), t)
    hi = torch.sigmoid(torch.tensor(10.0))
    assert drop == pytest.approx(torch.full((4,), float(100 * (hi - 0.5) / hi)), rel=1e-4)


def test_constant_prediction_model_is_scored_not_nan():
    x, t = torch.rand(3, 1, S, S), torch.zeros(3, dtype=torch.long)
    maps = torch.rand(3, 1, S, S)
    maps[2] = float("nan")
    p = torch.softmax(torch.tensor([2.0, 0.0]), 0)[0].item()
    c, frac = perturbation_curves(ConstantModel(), x, maps, t, "insertion", steps=8)
    a = auc(c, frac)
    assert a[:2] == pytest.approx(torch.full((2,), p)) and torch.isnan(a[2])
    drop, inc = confidence_change(ConstantModel(), x, maps, t)
    assert drop[:2].tolist() == [0.0, 0.0] and inc[:2].tolist() == [0.0, 0.0]
    stat = summarise(a)
    assert stat.n == 2 and stat.skipped == 1 and stat.mean == pytest.approx(p)


def test_constant_map_ranks_pixels_at_random(region_case):
    net, x, region, t = region_case
    flat = torch.zeros(4, 1, S, S)
    c, frac = perturbation_curves(net, x, flat, t, "deletion", steps=16, seed=1)
    assert torch.isfinite(c).all()
    # the region's 64 pixels are spread over the order, so the drop is gradual
    assert 0.1 < auc(c, frac).mean() < 0.9


# --- summaries ----------------------------------------------------------------------------

def test_summarise_mean_interval_skips_and_per_class_mean():
    v = torch.tensor([1.0, 1.0, 1.0, 0.0, float("nan")])
    s = summarise(v)
    assert s.mean == pytest.approx(0.75) and s.n == 4 and s.skipped == 1
    assert s.low <= s.mean <= s.high
    per_class = summarise(v, torch.tensor([0, 0, 0, 1, 1]))
    assert per_class.mean == pytest.approx(0.5)   # class 0: 1.0, class 1: 0.0
    empty = summarise(torch.full((3,), float("nan")))
    assert empty.mean is None and empty.skipped == 3 and "n/a" in empty.text()


# --- sanity check -------------------------------------------------------------------------

def test_rank_correlation_and_ssim_known_cases():
    a = torch.arange(S * S, dtype=torch.float).view(1, 1, S, S) / (S * S)
    a = a.expand(2, -1, -1, -1)
    assert rank_correlation(a, a) == pytest.approx(torch.ones(2))
    assert rank_correlation(a, 1 - a) == pytest.approx(-torch.ones(2))
    assert rank_correlation(a, torch.zeros_like(a)).tolist() == [0.0, 0.0]
    assert rank_correlation(torch.zeros_like(a), a).isnan().all()
    assert ssim(a, a) == pytest.approx(torch.ones(2), abs=1e-4)


def test_randomisation_units_run_top_down(tiny_abn):
    x = torch.zeros(1, 1, 28, 28)
    units = randomisation_units(tiny_abn.net, x)
    assert units[0] == "fc" and units[-1] == "conv1"
    assert units.index("layer3.0") < units.index("att_conv3") < units.index("att_layer3.0") \
        < units.index("layer2.0")
    params = dict(tiny_abn.net.named_modules())
    assert all(any(True for _ in params[u].parameters()) for u in units)


def test_randomise_keeps_scale_and_sanity_check_leaves_the_model_alone(tiny_abn):
    conv = nn.Conv2d(8, 8, 3)
    before = conv.weight.detach().clone()
    randomise_(conv, torch.Generator().manual_seed(0))
    assert not torch.equal(before, conv.weight)
    assert conv.weight.pow(2).mean().sqrt().item() == pytest.approx(before.pow(2).mean().sqrt().item(), rel=0.2)
    state = {k: v.clone() for k, v in tiny_abn.net.state_dict().items()}
    sanity_check(tiny_abn, "abn", torch.randn(2, 1, 28, 28))
    assert all(torch.equal(v, tiny_abn.net.state_dict()[k]) for k, v in state.items())


@pytest.fixture(scope="module")
def square_model(tmp_path_factory):
    """A tiny ResNet trained (a few seconds) to tell a bright square in the left half of the
    image from one in the right half; its Grad-CAM points at the square."""
    torch.manual_seed(0)
    model = create_model(str(tiny_checkpoint(tmp_path_factory.mktemp("sq") / "sq", arch="resnet",
                                             size=S, num_classes=2)))
    g = torch.Generator().manual_seed(0)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs = torch.randint(0, S - 8, (n,), generator=g)
        ys = torch.randint(0, S - 8, (n,), generator=g)
        x = torch.stack([square(int(a), int(b)).float() for a, b in zip(xs, ys)])[:, None]
        return x * 3 - 0.5, (xs + 4 >= S // 2).long()

    opt = torch.optim.Adam(model.net.parameters(), lr=0.02)
    model.net.train()
    for _ in range(150):
        x, y = sample(32)
        loss = nn.functional.cross_entropy(model.net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.net.eval()
    x, y = sample(64)
    assert (model.net(x).argmax(1) == y).float().mean() > 0.9
    return model, x[:16]


def test_gradcam_of_a_fully_randomised_model_is_unrelated(square_model):
    model, x = square_model
    original = Explainer(model, "gradcam")(x).maps
    assert pointing_game(original, x[:, 0] > 0).mean() > 0.5  # meaningful (chance: ~0.15)
    res = sanity_check(model, "gradcam", x, seed=0)
    assert res.units[0] == "fc" and res.spearman.shape == (len(res.units), 16)
    assert res.spearman[-1].nanmean() < 0.3     # everything randomised: near 0
    assert res.ssim[-1].nanmean() < 0.3


class InputMap(Method):
    """An "explanation" that ignores the model: the input's intensity."""
    name = "input_map"
    uses_gradients = needs_layer = reads_activation = False

    def compute(self, x, acts, logits, targets):
        return x.abs().sum(1, keepdim=True)


def test_a_map_that_ignores_the_model_fails_the_sanity_check(square_model, monkeypatch):
    monkeypatch.setitem(METHODS, "input_map", InputMap)
    model, x = square_model
    res = sanity_check(model, "input_map", x[:4])
    assert res.spearman.nanmean() == pytest.approx(1.0)
    assert not math.isnan(float(res.ssim[-1].mean()))
