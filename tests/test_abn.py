"""Attention Branch Network: shapes at both input sizes, native map, re-scoring, official
checkpoints (key names and shapes written out independently of our model code)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import official_state, save_as_from_gpu

from explain.errors import WeightsError
from explain.methods import Explainer
from explain.models import build, get_arch
from explain.registry import create_model


@pytest.mark.parametrize("size, block, map_size", [(28, "basic", 14), (64, "bottleneck", 32),
                                                    (224, "bottleneck", 14)])
def test_abn_builds_at_both_input_sizes(size, block, map_size):
    kw = get_arch("abn_resnet").kwargs(7, 3, size, depths=(1, 1, 1) if size <= 64 else (1, 1, 1, 1),
                                       widths=(4, 8, 8) if size <= 64 else (8, 8, 16, 16), block=block)
    net = build("abn_resnet", kw).eval()
    out = net.forward_all(torch.randn(2, 3, size, size))
    assert out.logits.shape == (2, 7) and out.att_logits.shape == (2, 7)
    assert out.att_map.shape == (2, 1, map_size, map_size)
    assert out.att_map.min() >= 0 and out.att_map.max() <= 1
    # any input size: adaptive pooling
    assert net(torch.randn(1, 3, size + 8, size + 8)).shape == (1, 7)


def test_rescoring_with_own_map_reproduces_logits_and_edits_change_them(tiny_abn):
    net = tiny_abn.net
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        out = net.forward_all(x)
        same = net(x, att=out.att_map)
        upsampled = torch.nn.functional.interpolate(out.att_map, size=(28, 28), mode="bilinear")
        zero = net(x, att=torch.zeros_like(out.att_map))
    assert torch.allclose(same, out.logits, atol=1e-6)
    assert net(x, att=upsampled).shape == (4, 10)  # maps at image size are resized
    assert not torch.allclose(zero, out.logits)


def official_resnet_keys(depths, widths, k, imagenet: bool, block: str = "bottleneck",
                         batches_tracked: bool = False) -> dict[str, tuple]:
    """Key -> shape of an official ABN ResNet checkpoint, from the official code's structure
    (models/imagenet/resnet.py, models/cifar/resnet.py): torchvision-style blocks, the first
    block of a stage projecting when its stride or width changes, `att_layerN` a stride-1
    copy of the last stage fed from the same input, the ABN head; `num_batches_tracked` only in
    files from PyTorch >= 0.4.1 (the 2022 update)."""
    keys: dict[str, tuple] = {}
    e = 4 if block == "bottleneck" else 1

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.{p}"] = (c,)
        if batches_tracked:
            keys[f"{name}.num_batches_tracked"] = ()

    keys["conv1.weight"] = (widths[0], 3, 7, 7) if imagenet else (widths[0], 3, 3, 3)
    bn("bn1", widths[0])

    def stage(name, inplanes, planes, n, stride):
        for j in range(n):
            inp = inplanes if j == 0 else planes * e
            if block == "bottleneck":
                keys[f"{name}.{j}.conv1.weight"] = (planes, inp, 1, 1)
                bn(f"{name}.{j}.bn1", planes)
                keys[f"{name}.{j}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{name}.{j}.bn2", planes)
                keys[f"{name}.{j}.conv3.weight"] = (planes * 4, planes, 1, 1)
                bn(f"{name}.{j}.bn3", planes * 4)
            else:
                keys[f"{name}.{j}.conv1.weight"] = (planes, inp, 3, 3)
                bn(f"{name}.{j}.bn1", planes)
                keys[f"{name}.{j}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{name}.{j}.bn2", planes)
            if j == 0 and (stride != 1 or inp != planes * e):
                keys[f"{name}.0.downsample.0.weight"] = (planes * e, inp, 1, 1)
                bn(f"{name}.0.downsample.1", planes * e)

    inplanes = widths[0]
    for i, (n, w) in enumerate(zip(depths, widths), start=1):
        stage(f"layer{i}", inplanes, w, n, 1 if i == 1 else 2)
        last_in, inplanes = inplanes, w * e
    stage(f"att_layer{len(depths)}", last_in, widths[-1], depths[-1], 1)
    c = widths[-1] * e
    bn("bn_att", c)
    keys["att_conv.weight"] = (k, c, 1, 1)
    bn("bn_att2", k)
    keys["att_conv2.weight"] = (k, k, 1, 1)
    keys["att_conv3.weight"] = (1, k, 3, 3)
    bn("bn_att3", 1)
    keys["fc.weight"], keys["fc.bias"] = (k, c), (k,)
    return keys


def official_cifar_keys(depth: int, k: int, batches_tracked: bool = False) -> dict[str, tuple]:
    """The official CIFAR rule (models/cifar/resnet.py): depth = 6n + 2, n blocks per stage,
    Bottleneck when depth >= 44, BasicBlock below; stages 16/32/64 wide, 3x3 stem."""
    assert (depth - 2) % 6 == 0
    n = (depth - 2) // 6
    return official_resnet_keys((n, n, n), (16, 32, 64), k, imagenet=False,
                                block="bottleneck" if depth >= 44 else "basic",
                                batches_tracked=batches_tracked)


def official_file(path, keys, seed=0, torch04_gpu: bool = False):
    """An official ABN training file: {'epoch', 'state_dict' (DataParallel's module.
    prefixes), 'acc', 'best_acc', 'optimizer'} (cifar.py / imagenet.py save_checkpoint), as
    current PyTorch writes it or as the first release's PyTorch 0.4 did on a GPU."""
    sd = {f"module.{name}": v for name, v in official_state(keys, seed).items()}
    state = {"epoch": 90, "state_dict": sd, "acc": torch.tensor(76.9), "best_acc": 76.9,
             "optimizer": {"state": {}, "param_groups": []}}
    if torch04_gpu:
        save_as_from_gpu(state, path)
    else:
        torch.save(state, path)
    return sd


def official_cifar_forward(sd: dict, x: torch.Tensor, depth: int):
    """The official CIFAR ABN forward (models/cifar/resnet.py), in functional ops on its state
    dict: (attention logits, perception logits, attention map)."""
    n, bottleneck = (depth - 2) // 6, depth >= 44

    def bn(t, name):
        return F.batch_norm(t, sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
                            sd[f"{name}.weight"], sd[f"{name}.bias"], False, 0.0, 1e-5)

    def block(t, pre, stride):
        if bottleneck:
            out = F.relu(bn(F.conv2d(t, sd[f"{pre}.conv1.weight"]), f"{pre}.bn1"))
            out = F.relu(bn(F.conv2d(out, sd[f"{pre}.conv2.weight"], stride=stride, padding=1),
                            f"{pre}.bn2"))
            out = bn(F.conv2d(out, sd[f"{pre}.conv3.weight"]), f"{pre}.bn3")
        else:
            out = F.relu(bn(F.conv2d(t, sd[f"{pre}.conv1.weight"], stride=stride, padding=1),
                            f"{pre}.bn1"))
            out = bn(F.conv2d(out, sd[f"{pre}.conv2.weight"], padding=1), f"{pre}.bn2")
        if f"{pre}.downsample.0.weight" in sd:
            t = bn(F.conv2d(t, sd[f"{pre}.downsample.0.weight"], stride=stride),
                   f"{pre}.downsample.1")
        return F.relu(out + t)

    def stage(t, name, stride):
        for j in range(n):
            t = block(t, f"{name}.{j}", stride if j == 0 else 1)
        return t

    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], padding=1), "bn1"))
    x = stage(stage(x, "layer1", 1), "layer2", 2)
    ax = bn(stage(x, "att_layer3", 1), "bn_att")
    ax = F.relu(bn(F.conv2d(ax, sd["att_conv.weight"]), "bn_att2"))
    att = torch.sigmoid(bn(F.conv2d(ax, sd["att_conv3.weight"], padding=1), "bn_att3"))
    ax = F.avg_pool2d(F.conv2d(ax, sd["att_conv2.weight"]), 16).flatten(1)
    rx = F.avg_pool2d(stage(x * att + x, "layer3", 2), 8).flatten(1)
    return ax, F.linear(rx, sd["fc.weight"], sd["fc.bias"]), att


def test_official_cifar_resnet110_has_18_bottlenecks_per_stage():
    keys = official_cifar_keys(110, 10)
    assert {k.split(".")[1] for k in keys if k.startswith("layer1.")} == set(map(str, range(18)))
    params = sum(math.prod(s) for n, s in keys.items() if "running" not in n)
    assert round(params / 1e6, 1) == 3.0  # the count for the official model


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
@pytest.mark.parametrize("k", [10, 100])
def test_every_official_cifar_depth_loads_and_matches_the_official_forward(tmp_path, depth, k):
    keys = official_cifar_keys(depth, k, batches_tracked=k == 100)
    path = tmp_path / "model_best.pth.tar"
    sd = {n[len("module."):]: v
          for n, v in official_file(path, keys, depth + k, torch04_gpu=k == 10).items()}
    model = create_model(f"abn_resnet{depth}_cifar{k}", weights=str(path))
    assert model.input.size == (32, 32) and len(model.classes) == k
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref_att_logits, ref_logits, ref_att = official_cifar_forward(sd, x, depth)
        out = model.net.forward_all(x)
    assert torch.allclose(out.att_map, ref_att, atol=1e-5)
    assert torch.allclose(out.logits, ref_logits, rtol=1e-4, atol=1e-4)
    assert torch.allclose(out.att_logits, ref_att_logits, rtol=1e-4, atol=1e-4)
    e = Explainer(model, "abn")(x)
    assert torch.equal(e.raw, out.att_map) and e.raw.shape[-1] == 16


@pytest.mark.parametrize("name, depths, widths, k, size, block", [
    ("abn_resnet50", (3, 4, 6, 3), (64, 128, 256, 512), 1000, 224, "bottleneck"),
    ("abn_resnet18", (2, 2, 2, 2), (64, 128, 256, 512), 1000, 224, "basic"),
])
def test_official_imagenet_checkpoint_loads_and_runs(tmp_path, name, depths, widths, k, size,
                                                     block):
    keys = official_resnet_keys(depths, widths, k, imagenet=True, block=block)
    path = tmp_path / "checkpoint.pth.tar"
    sd = official_file(path, keys)
    model = create_model(name, weights=str(path))
    assert torch.equal(model.net.att_conv3.weight, sd["module.att_conv3.weight"])
    assert torch.equal(model.net.layer2[0].downsample[0].weight, sd["module.layer2.0.downsample.0.weight"])
    e = Explainer(model, "abn")(torch.randn(1, 3, size, size))
    assert e.logits.shape == (1, k) and e.raw.shape[-1] == size // 16
    assert torch.isfinite(e.maps).all()


def test_mismatched_official_checkpoint_names_the_keys(tmp_path):
    keys = official_cifar_keys(110, 10)
    path = tmp_path / "model_best.pth.tar"
    official_file(path, keys)
    with pytest.raises(WeightsError) as e:
        create_model("abn_resnet110_cifar100", weights=str(path))
    msg = str(e.value)
    assert "shape mismatch" in msg and "att_conv.weight (10, 256, 1, 1) vs (100, 256, 1, 1)" in msg
    del_keys = {n: s for n, s in keys.items() if not n.startswith("att_layer3.17")}
    official_file(path, del_keys)
    with pytest.raises(WeightsError, match="missing keys: att_layer3.17.conv1.weight"):
        create_model("abn_resnet110_cifar10", weights=str(path))
    official_file(path, official_cifar_keys(56, 10))
    with pytest.raises(WeightsError, match="missing keys: layer1.9.conv1.weight"):
        create_model("abn_resnet110_cifar10", weights=str(path))


def test_official_model_without_weights_is_a_clear_error():
    from explain.errors import ExplainError
    with pytest.raises(ExplainError, match="^weights: abn_resnet50 needs the official checkpoint"):
        create_model("abn_resnet50")


def test_abn_on_pretrained_efficientnet_lite0():
    kw = get_arch("abn_efficientnet_lite0").kwargs(4, 3, 224)
    net = build("abn_efficientnet_lite0", kw)
    net.load_pretrained()
    ref = create_model("efficientnet_lite0").net
    assert torch.equal(net.backbone._blocks[3]._depthwise_conv.weight, ref._blocks[3]._depthwise_conv.weight)
    assert torch.equal(net.att_layer[0]._project_conv.weight, ref._blocks[11]._project_conv.weight)
    out = net.eval().forward_all(torch.randn(1, 3, 224, 224))
    assert out.logits.shape == (1, 4) and out.att_map.shape == (1, 1, 14, 14)
