"""Native maps of the attention family through the extractor API and the CLI: one forward
pass (T for Bayesian ABN), no backward, every map of a model or the one `--layer` picks, and
an official-format CBAM checkpoint that loads and gives the official computation's maps."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import SAMPLES as PHOTOS, official_state, save_as_from_gpu

from explain.cli.main import main
from explain.checkpoint import save_checkpoint
from explain.datasets import FMNIST_CLASSES
from explain.errors import ExplainError, WeightsError
from explain.methods import Explainer
from explain.models import build, get_arch
from explain.preprocess import InputSpec
from explain.registry import Model, create_model
from explain.render import bars

SAMPLES = Path(__file__).resolve().parents[1] / "explain" / "samples" / "fmnist"
TINY = {"ran": {"widths": (8, 16, 16)},
        "cbam_resnet": {"depths": (1, 1, 1), "widths": (8, 16, 16)},
        "se_resnet": {"depths": (1, 1, 1), "widths": (8, 16, 16)},
        "attend_rectify": {"depths": (1, 1, 1), "widths": (8, 16, 16), "heads": 2},
        "bayes_abn_resnet": {"depths": (1, 1, 1), "widths": (8, 16, 16), "samples": 6}}
METHOD = {"ran": "ran", "cbam_resnet": "cbam", "se_resnet": "se",
          "attend_rectify": "attend_rectify", "bayes_abn_resnet": "bayes_abn"}


def randomise_batchnorms(net: torch.nn.Module, seed: int = 0) -> None:
    """Untrained BatchNorms are identities (and CBAM's spatial one is zero): give them random
    statistics so that the maps of an untrained net vary over the image."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.2
            m.running_mean = torch.randn(n, generator=g) * 0.2
            m.running_var = torch.rand(n, generator=g) + 0.5


def checkpoint(out: Path, arch: str, size: int = 28, channels: int = 1, **overrides) -> Path:
    """A small untrained `arch` saved as a real checkpoint folder (model card + weights)."""
    torch.manual_seed(0)
    kw = get_arch(arch).kwargs(10, channels, size, **overrides)
    net = build(arch, kw)
    randomise_batchnorms(net)
    spec = InputSpec(size=(size, size), channels=channels, mean=(0.286,) * channels,
                     std=(0.353,) * channels)
    card = {"name": out.name, "arch": arch, "arch_kwargs": kw, "classes": FMNIST_CLASSES,
            "input": spec.to_dict(), "data": "none (test)", "seed": 0}
    return save_checkpoint(out, net, card)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("family")
    return {a: checkpoint(root / a, a, **kw) for a, kw in TINY.items()}


@pytest.fixture(scope="module")
def models(ckpts) -> dict[str, Model]:
    return {a: create_model(str(d)) for a, d in ckpts.items()}


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))


class Calls:
    """Counts how often modules run during a block."""

    def __init__(self, net: torch.nn.Module, *names: str):
        mods = dict(net.named_modules())
        self.counts = dict.fromkeys(names, 0)
        self.hooks = [mods[n].register_forward_hook(lambda *a, n=n: self.bump(n)) for n in names]

    def bump(self, name: str) -> None:
        self.counts[name] += 1

    def __enter__(self) -> dict[str, int]:
        return self.counts

    def __exit__(self, *exc) -> None:
        for h in self.hooks:
            h.remove()


def test_registry_lists_every_map_shallow_to_deep_with_the_deepest_default(models):
    ran = models["ran"]
    assert ran.native_layers["ran"] == ["layer1.1.mask", "layer2.1.mask", "layer3.1.mask"]
    assert ran.native["ran"] == "layer3.1.mask"
    cbam = models["cbam_resnet"].native_maps("cbam")
    assert cbam == [f"layer{i}.0.cbam.SpatialGate.sigmoid" for i in (1, 2, 3)]
    assert models["attend_rectify"].native_maps("attend_rectify") == [
        f"attention.{i}.gated_heads" for i in range(3)]
    assert set(models["bayes_abn_resnet"].native) == {"abn", "bayes_abn"}


@pytest.mark.parametrize("arch", [a for a in TINY if a != "bayes_abn_resnet"])
def test_all_maps_come_from_one_forward_pass_without_backward(models, x, arch):
    model = models[arch]
    method = METHOD[arch]
    with Explainer(model, method) as ex, Calls(model.net, "", "fc") as calls:
        maps = ex.all_maps(x)
    assert calls == {"": 1, "fc": 1}
    assert len(maps) == len(model.native_maps(method))
    assert all(p.grad is None for p in model.net.parameters())
    for key, e in maps.items():
        assert key.startswith(f"{method}@")
        assert e.maps.shape == (3, 1, 28, 28) and 0 <= e.maps.min() and e.maps.max() <= 1
        assert not e.raw.requires_grad and e.logits.shape == (3, 10)
        if arch == "se_resnet":
            assert e.raw.ndim == 2 and (e.raw > 0).all() and (e.raw < 1).all()
            assert (e.maps == 0).all()  # no spatial map
        else:
            assert e.raw.ndim == 4 and e.maps.flatten(1).amax(1).eq(1).all()


@pytest.mark.parametrize("arch", list(TINY))
def test_layer_picks_one_map_and_an_unknown_layer_lists_them(models, x, arch):
    model = models[arch]
    method = METHOD[arch]
    layers = model.native_maps(method)
    with Explainer(model, method, layer=layers[0]) as ex:
        assert ex(x).layer == layers[0]
    with Explainer(model, method) as ex:
        assert ex(x).layer == layers[-1]
    with pytest.raises(ExplainError) as err:
        with Explainer(model, method, layer="layer9.nope") as ex:
            ex(x)
    assert "layer9.nope" in str(err.value) and all(l in str(err.value) for l in layers)


@pytest.mark.parametrize("arch", list(TINY))
def test_gradcam_runs_at_every_family_members_default_layer(models, x, arch):
    model = models[arch]
    with Explainer(model, "gradcam") as ex:
        e = ex(x)
    assert e.layer == model.cam_layer and e.maps.shape == (3, 1, 28, 28)
    assert torch.isfinite(e.maps).all() and e.maps.max() <= 1


def test_ran_map_is_the_channel_mean_of_the_module_mask(models, x):
    net = models["ran"].net
    with Explainer(models["ran"], "ran") as ex:
        maps = ex.all_maps(x)
    with torch.no_grad():
        h = net.layer1[0](net.stem(x))
        mask = net.layer1[1].mask(net.layer1[1].pre(h))
    assert mask.shape == (3, 8, 28, 28) and mask.min() >= 0 and mask.max() <= 1
    assert torch.allclose(maps["ran@layer1"].raw, mask.mean(1, keepdim=True), atol=1e-6)
    assert [m.raw.shape[-1] for m in maps.values()] == [28, 14, 7]


def test_attend_rectify_map_is_heads_weighted_by_gates(models, x):
    """Each head is a softmax over positions and the gates sum to 1: every module's
    gated heads sum to exactly 1 per image, each head to its gate."""
    with Explainer(models["attend_rectify"], "attend_rectify") as ex:
        maps = ex.all_maps(x)
    for e in maps.values():
        assert e.raw.shape[:2] == (3, 2)
        gates = e.raw.sum(dim=(2, 3))
        assert torch.allclose(gates.sum(1), torch.ones(3), atol=1e-5) and (gates > 0).all()


def test_se_excitations_render_as_bar_charts(models, x):
    with Explainer(models["se_resnet"], "se") as ex:
        e = ex(x)
    tiles = bars(e.raw, 64)
    assert tiles.shape == (3, 64, 64, 3) and tiles.dtype == np.uint8
    coloured = (tiles != 255).any(-1) & ~(tiles == 191).all(-1)  # bars, not the 0.5 line
    heights = coloured.sum(1)                                     # per pixel column
    c = e.raw.shape[1]  # 16 channels over 64 columns: 4 columns a bar, the first one a gap
    expected = (e.raw * 63).round()
    assert np.array_equal(heights[:, 1::4], expected.numpy().astype(int))
    assert (heights[:, ::4] == 0).all() and c == 16


def test_bayes_abn_uncertainty_is_zero_without_dropout_and_positive_with_it(tmp_path, x):
    results = {}
    for p in (0.0, 0.3):
        model = create_model(str(checkpoint(tmp_path / f"p{p}", "bayes_abn_resnet",
                                            **{**TINY["bayes_abn_resnet"], "dropout": p})))
        with Explainer(model, "bayes_abn", samples=5) as ex, \
                Calls(model.net, "layer1", "att_map") as calls:
            e = ex(x)
        assert calls == {"layer1": 1, "att_map": 5}  # features once, the branches T times
        assert all(not m.training for m in model.net.modules())  # dropout off again
        results[p] = e
    off, on = results[0.0], results[0.3]
    assert off.extras["std"].abs().max() < 1e-6 and off.maps.shape == (3, 1, 28, 28)
    assert (on.extras["std"].flatten(1).amax(1) > 1e-4).all()
    for e in (off, on):
        for branch in ("entropy_attention", "entropy_perception"):
            h = e.extras[branch]
            assert h.shape == (3,) and (h >= 0).all() and (h <= math.log(10) + 1e-5).all()
        assert torch.allclose(e.logits.exp().sum(1), torch.ones(3), atol=1e-5)
    with Explainer(create_model(str(checkpoint(tmp_path / "all", "bayes_abn_resnet",
                                               **TINY["bayes_abn_resnet"]))), "bayes_abn") as ex:
        both = ex.all_maps(x)
    assert list(both) == ["bayes_abn", "bayes_abn@std"]
    assert torch.equal(both["bayes_abn@std"].raw, both["bayes_abn"].extras["std"])


# ---- an official CBAM checkpoint (Jongchan/attention-module), rebuilt from its key layout ----

# The official rule, ResidualNet(network_type, depth, num_classes, 'CBAM'): depth -> (blocks
# per stage, block type); stages 64/128/256/512 planes.
OFFICIAL_CBAM = {18: ((2, 2, 2, 2), "basic"), 34: ((3, 4, 6, 3), "basic"),
                 50: ((3, 4, 6, 3), "bottleneck"), 101: ((3, 4, 23, 3), "bottleneck")}


def official_cbam_keys(depths, planes, num_classes=1000, block="bottleneck",
                       reduction=16) -> dict[str, tuple]:
    """Key -> shape of the official CBAM-ResNet with the ImageNet stem (MODELS/model_resnet.py
    + MODELS/cbam.py): torchvision-style blocks, a projection where the stride or width
    changes, CBAM(planes * expansion, 16) after each block's last BN, no num_batches_tracked
    (PyTorch 0.4)."""
    keys: dict[str, tuple] = {}
    e = 4 if block == "bottleneck" else 1

    def bn(name, n):
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.{p}"] = (n,)

    keys["conv1.weight"] = (planes[0], 3, 7, 7)
    bn("bn1", planes[0])
    inplanes = planes[0]
    for i, (d, p) in enumerate(zip(depths, planes)):
        for j in range(d):
            pre, stride = f"layer{i + 1}.{j}", 2 if i > 0 and j == 0 else 1
            if block == "bottleneck":
                keys[f"{pre}.conv1.weight"] = (p, inplanes, 1, 1)
                keys[f"{pre}.conv2.weight"] = (p, p, 3, 3)
                keys[f"{pre}.conv3.weight"] = (4 * p, p, 1, 1)
                for k, n in (("bn1", p), ("bn2", p), ("bn3", 4 * p)):
                    bn(f"{pre}.{k}", n)
            else:
                keys[f"{pre}.conv1.weight"] = (p, inplanes, 3, 3)
                keys[f"{pre}.conv2.weight"] = (p, p, 3, 3)
                bn(f"{pre}.bn1", p)
                bn(f"{pre}.bn2", p)
            if stride != 1 or inplanes != p * e:
                keys[f"{pre}.downsample.0.weight"] = (p * e, inplanes, 1, 1)
                bn(f"{pre}.downsample.1", p * e)
            c, hidden = p * e, p * e // reduction
            keys[f"{pre}.cbam.ChannelGate.mlp.1.weight"] = (hidden, c)
            keys[f"{pre}.cbam.ChannelGate.mlp.1.bias"] = (hidden,)
            keys[f"{pre}.cbam.ChannelGate.mlp.3.weight"] = (c, hidden)
            keys[f"{pre}.cbam.ChannelGate.mlp.3.bias"] = (c,)
            keys[f"{pre}.cbam.SpatialGate.spatial.conv.weight"] = (1, 2, 7, 7)
            bn(f"{pre}.cbam.SpatialGate.spatial.bn", 1)
            inplanes = p * e
    keys["fc.weight"], keys["fc.bias"] = (num_classes, inplanes), (num_classes,)
    return keys


def official_forward(sd: dict, x: torch.Tensor, depths) -> tuple[torch.Tensor, list]:
    """The official network's computation, written with functional ops from its state dict:
    (logits, the spatial attention map of every block)."""
    def bn(t, name):
        return F.batch_norm(t, sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
                            sd[f"{name}.weight"], sd[f"{name}.bias"], False, 0.0, 1e-5)

    def mlp(v, pre):
        h = F.relu(F.linear(v, sd[f"{pre}.mlp.1.weight"], sd[f"{pre}.mlp.1.bias"]))
        return F.linear(h, sd[f"{pre}.mlp.3.weight"], sd[f"{pre}.mlp.3.bias"])

    maps = []
    x = F.max_pool2d(F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1")),
                     3, 2, 1)
    for i, d in enumerate(depths):
        for j in range(d):
            pre, stride = f"layer{i + 1}.{j}", 2 if i > 0 and j == 0 else 1
            if f"{pre}.conv3.weight" in sd:  # Bottleneck
                out = F.relu(bn(F.conv2d(x, sd[f"{pre}.conv1.weight"]), f"{pre}.bn1"))
                out = F.relu(bn(F.conv2d(out, sd[f"{pre}.conv2.weight"], stride=stride,
                                         padding=1), f"{pre}.bn2"))
                out = bn(F.conv2d(out, sd[f"{pre}.conv3.weight"]), f"{pre}.bn3")
            else:  # BasicBlock
                out = F.relu(bn(F.conv2d(x, sd[f"{pre}.conv1.weight"], stride=stride,
                                         padding=1), f"{pre}.bn1"))
                out = bn(F.conv2d(out, sd[f"{pre}.conv2.weight"], padding=1), f"{pre}.bn2")
            hw = out.shape[-2:]
            ca = mlp(F.avg_pool2d(out, hw).flatten(1), f"{pre}.cbam.ChannelGate") + \
                mlp(F.max_pool2d(out, hw).flatten(1), f"{pre}.cbam.ChannelGate")
            out = out * torch.sigmoid(ca)[:, :, None, None]
            pooled = torch.cat([out.max(1)[0].unsqueeze(1), out.mean(1).unsqueeze(1)], 1)
            sa = torch.sigmoid(bn(F.conv2d(pooled, sd[f"{pre}.cbam.SpatialGate.spatial.conv.weight"],
                                           padding=3), f"{pre}.cbam.SpatialGate.spatial.bn"))
            maps.append(sa)
            res = x
            if f"{pre}.downsample.0.weight" in sd:
                res = bn(F.conv2d(x, sd[f"{pre}.downsample.0.weight"], stride=stride),
                         f"{pre}.downsample.1")
            x = F.relu(out * sa + res)
    x = F.avg_pool2d(x, 7).flatten(1)
    return F.linear(x, sd["fc.weight"], sd["fc.bias"]), maps


def official_cbam_file(sd: dict, path: Path) -> None:
    """The official training file (train_imagenet.py save_checkpoint), saved from GPUs under
    DataParallel by PyTorch 0.4: `module.` prefixes, best_prec1 a tensor, SGD state."""
    first = next(iter(sd.values()))
    save_as_from_gpu({"epoch": 100, "arch": "resnet", "best_prec1": torch.tensor(77.622),
                      "state_dict": {f"module.{k}": v for k, v in sd.items()},
                      "optimizer": {"state": {0: {"momentum_buffer": torch.zeros_like(first)}},
                                    "param_groups": [{"lr": 0.001, "momentum": 0.9,
                                                      "params": [0, 1]}]}}, path)


def test_official_cbam_checkpoint_loads_and_runs(tmp_path):
    depths, planes = (1, 1, 1, 1), (8, 8, 16, 16)
    sd = official_state(official_cbam_keys(depths, planes, num_classes=10))
    pth = tmp_path / "RESNET50_CBAM_new_name_wrap.pth"
    official_cbam_file(sd, pth)
    folder = checkpoint(tmp_path / "cbam224", "cbam_resnet", size=224, channels=3,
                        depths=depths, widths=planes, block="bottleneck", stem="imagenet",
                        reduction=16)
    model = create_model(str(folder), weights=str(pth))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref_logits, ref_maps = official_forward(sd, x, depths)
    with Explainer(model, "cbam") as ex:
        maps = ex.all_maps(x)
    first = next(iter(maps.values()))
    assert torch.allclose(first.logits, ref_logits, atol=1e-4, rtol=1e-4)
    assert len(maps) == len(ref_maps) == 4
    for e, ref in zip(maps.values(), ref_maps):
        assert e.raw.shape == ref.shape and torch.allclose(e.raw, ref, atol=1e-5)
    # a file for another layout names what does not fit
    del sd["layer2.0.cbam.SpatialGate.spatial.conv.weight"]
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, pth)
    with pytest.raises(WeightsError, match="missing keys: layer2.0.cbam.SpatialGate.spatial.conv"):
        create_model(str(folder), weights=str(pth))


@pytest.mark.parametrize("depth", sorted(OFFICIAL_CBAM))
def test_official_cbam_release_loads_by_name_with_the_official_maps(tmp_path, depth):
    depths, block = OFFICIAL_CBAM[depth]
    sd = official_state(official_cbam_keys(depths, (64, 128, 256, 512), block=block), seed=depth)
    path = tmp_path / f"RESNET{depth}_IMAGENET_CBAM_model_best.pth.tar"
    official_cbam_file(sd, path)
    if not torch.cuda.is_available():  # the file really is a GPU one
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    model = create_model(f"cbam_resnet{depth}", weights=str(path))
    assert len(model.native_maps("cbam")) == sum(depths)
    assert torch.equal(model.net.layer4[-1].cbam.SpatialGate.spatial.conv.weight,
                       sd[f"layer4.{depths[3] - 1}.cbam.SpatialGate.spatial.conv.weight"])
    if depth not in (18, 50):  # the layout is the point; the forward is checked on two depths
        return
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(depth))
    with torch.no_grad():
        ref_logits, ref_maps = official_forward(sd, x, depths)
    with Explainer(model, "cbam") as ex:
        maps = list(ex.all_maps(x).values())
    assert len(maps) == len(ref_maps) == sum(depths)
    assert torch.allclose(maps[0].logits, ref_logits, rtol=1e-4, atol=1e-4)
    for e, ref in zip(maps, ref_maps):
        assert ref.std() > 1e-3  # maps that vary over the image, not a constant
        assert e.raw.shape == ref.shape and torch.allclose(e.raw, ref, atol=1e-5)


def test_cli_explains_a_photo_with_the_official_cbam_resnet50_file(tmp_path, capsys):
    """`explain img.jpg --model cbam_resnet50 --weights model_best.pth.tar`: 16 spatial maps,
    and the class the official computation gives on torchvision's preprocessing of the photo."""
    from torchvision import transforms as T
    depths, block = OFFICIAL_CBAM[50]
    sd = official_state(official_cbam_keys(depths, (64, 128, 256, 512), block=block), seed=7)
    path = tmp_path / "RESNET50_IMAGENET_CBAM_model_best.pth.tar"
    official_cbam_file(sd, path)
    photo = PHOTOS / "chelsea.jpg"
    x = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                   T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])(
        Image.open(photo).convert("RGB"))
    with torch.no_grad():
        ref_logits, _ = official_forward(sd, x[None], depths)
    capsys.readouterr()
    assert main([str(photo), "--model", "cbam_resnet50", "--weights", str(path), "--methods",
                 "cbam", "--json", "--out", str(tmp_path / "out")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["topk"][0]["index"] == int(ref_logits.argmax())
    assert len(record["methods"]) == 16 and all(m.startswith("cbam@layer") for m in record["methods"])


# ---- the command line ----

def run_cli(*argv: str) -> int:
    return main([str(a) for a in argv])


def test_cli_shows_every_map_side_by_side_or_the_one_layer_asks_for(ckpts, tmp_path, capsys):
    img = SAMPLES / "sneaker.png"
    out = tmp_path / "all"
    assert run_cli(img, "--model", ckpts["ran"], "--out", out) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["sneaker_gradcam.png", "sneaker_panel.png", "sneaker_ran@layer1.png",
                     "sneaker_ran@layer2.png", "sneaker_ran@layer3.png"]
    panel = np.asarray(Image.open(out / "sneaker_panel.png"))
    # input + 3 maps + gradcam, tiles of 320 px in rows of 4: two rows
    assert panel.shape[1] == 4 * 320 + 3 * 4 and panel.shape[0] > 2 * 320
    one = tmp_path / "one"
    assert run_cli(img, "--model", ckpts["ran"], "--layer", "layer2.1.mask", "--out", one) == 0
    assert sorted(p.name for p in one.glob("*.png")) == [
        "sneaker_gradcam.png", "sneaker_panel.png", "sneaker_ran.png"]
    capsys.readouterr()
    assert run_cli(img, "--model", ckpts["ran"], "--methods", "ran", "--layer", "layer2",
                   "--out", tmp_path / "bad") == 1
    errors = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "'layer2'" in errors[0] and "layer2.1.mask" in errors[0]


def test_cli_renders_se_excitations_as_bars_and_bayes_uncertainty(ckpts, tmp_path):
    out = tmp_path / "se"
    assert run_cli(SAMPLES / "bag.png", "--model", ckpts["se_resnet"], "--methods", "se",
                   "--out", out) == 0
    tiles = [np.asarray(Image.open(out / f"bag_se@layer{i}.png")) for i in (1, 2, 3)]
    # labelled bar charts: 224 px wide, a title and a legend around them, mostly white
    assert all(t.shape[1] == 224 and t.shape[0] > 224 and (t == 255).all(-1).mean() > 0.2
               for t in tiles)
    out = tmp_path / "bayes"
    assert run_cli(SAMPLES / "bag.png", "--model", ckpts["bayes_abn_resnet"], "--out", out) == 0
    assert {"bag_abn.png", "bag_bayes_abn.png", "bag_bayes_abn@std.png", "bag_gradcam.png"} <= {
        p.name for p in out.glob("*.png")}
