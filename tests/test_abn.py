"""Attention Branch Network: shapes at both input sizes, native map, re-scoring, official
checkpoints (key names and shapes written out independently of our model code)."""
from __future__ import annotations

import pytest
import torch

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


def official_resnet_keys(depths, widths, k, imagenet: bool) -> dict[str, tuple]:
    """Key -> shape of an official ABN ResNet (bottleneck) checkpoint, from the official
    code's structure: torchvision-style backbone, `att_layerN` a stride-1 copy of the last
    stage, the ABN head, and no `num_batches_tracked` (older files)."""
    keys: dict[str, tuple] = {}

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.{p}"] = (c,)

    keys["conv1.weight"] = (widths[0], 3, 7, 7) if imagenet else (widths[0], 3, 3, 3)
    bn("bn1", widths[0])

    def stage(name, inplanes, planes, n):
        for j in range(n):
            inp = inplanes if j == 0 else planes * 4
            keys[f"{name}.{j}.conv1.weight"] = (planes, inp, 1, 1)
            bn(f"{name}.{j}.bn1", planes)
            keys[f"{name}.{j}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{name}.{j}.bn2", planes)
            keys[f"{name}.{j}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{name}.{j}.bn3", planes * 4)
            if j == 0:
                keys[f"{name}.0.downsample.0.weight"] = (planes * 4, inp, 1, 1)
                bn(f"{name}.0.downsample.1", planes * 4)

    inplanes = widths[0]
    for i, (n, w) in enumerate(zip(depths, widths), start=1):
        stage(f"layer{i}", inplanes, w, n)
        last_in, inplanes = inplanes, w * 4
    stage(f"att_layer{len(depths)}", last_in, widths[-1], depths[-1])
    c = widths[-1] * 4
    bn("bn_att", c)
    keys["att_conv.weight"] = (k, c, 1, 1)
    bn("bn_att2", k)
    keys["att_conv2.weight"] = (k, k, 1, 1)
    keys["att_conv3.weight"] = (1, k, 3, 3)
    bn("bn_att3", 1)
    keys["fc.weight"], keys["fc.bias"] = (k, c), (k,)
    return keys


def official_file(path, keys, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {f"module.{name}": (torch.rand(shape, generator=g) + 0.5 if name.endswith("running_var")
                             else torch.randn(shape, generator=g) * 0.05)
          for name, shape in keys.items()}
    torch.save({"epoch": 90, "state_dict": sd, "acc": 76.9, "best_acc": 76.9,
                "optimizer": {"state": {}, "param_groups": []}}, path)
    return sd


@pytest.mark.parametrize("name, depths, widths, k, size", [
    ("abn_resnet110_cifar100", (12, 12, 12), (16, 32, 64), 100, 32),
    ("abn_resnet50", (3, 4, 6, 3), (64, 128, 256, 512), 1000, 224),
])
def test_official_checkpoint_loads_and_runs(tmp_path, name, depths, widths, k, size):
    keys = official_resnet_keys(depths, widths, k, imagenet=size == 224)
    path = tmp_path / "checkpoint.pth.tar"
    sd = official_file(path, keys)
    model = create_model(name, weights=str(path))
    assert torch.equal(model.net.att_conv3.weight, sd["module.att_conv3.weight"])
    assert torch.equal(model.net.layer1[0].downsample[0].weight, sd["module.layer1.0.downsample.0.weight"])
    e = Explainer(model, "abn")(torch.randn(1, 3, size, size))
    assert e.logits.shape == (1, k) and e.raw.shape[-1] == size // (16 if size == 224 else 2)
    assert torch.isfinite(e.maps).all()


def test_mismatched_official_checkpoint_names_the_keys(tmp_path):
    keys = official_resnet_keys((12, 12, 12), (16, 32, 64), 10, imagenet=False)
    path = tmp_path / "model_best.pth.tar"
    official_file(path, keys)
    with pytest.raises(WeightsError) as e:
        create_model("abn_resnet110_cifar100", weights=str(path))
    msg = str(e.value)
    assert "shape mismatch" in msg and "att_conv.weight (10, 256, 1, 1) vs (100, 256, 1, 1)" in msg
    del_keys = {n: s for n, s in keys.items() if not n.startswith("att_layer3.11")}
    official_file(path, del_keys)
    with pytest.raises(WeightsError, match="missing keys: att_layer3.11.conv1.weight"):
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
