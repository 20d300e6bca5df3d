"""Fine-tuning on edited maps: the map loss falls, the map moves toward the edit, the feature
extractor stays frozen, and the command writes a checkpoint and a before/after report."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SAMPLES
from explain import create_model, load_image
from explain.cli.main import main
from explain.checkpoint import load_checkpoint
from explain.datasets import FMNIST_CLASSES, ArrayData
from explain.editor.server import EditorSession
from explain.edits import EditStore, map_scale, model_maps
from explain.explanation import upsample
from explain.finetune import (PAPER, EditedSamples, EditedSet, FinetuneConfig, checkpoint_dir,
                              feature_modules, finetune, measure, tuning_config)
from explain.finetune_config import MAP_ONLY
from explain.models import build
from explain.trainsets import ArraySet


@pytest.fixture(scope="module")
def data() -> ArrayData:
    """64 noisy Fashion-MNIST-like images of 4 classes (a bright shape on black)."""
    rng = np.random.default_rng(0)
    labels = np.arange(64) % 4
    images = rng.integers(0, 40, (64, 28, 28)).astype(np.uint8)
    for i, y in enumerate(labels):
        images[i, 4 + 4 * y:12 + 4 * y, 6:22] = 220
    return ArrayData(images, labels.astype(np.int64), FMNIST_CLASSES, "synthetic")


def removal_edits(ckpt, data: ArrayData) -> tuple[EditedSamples, torch.Tensor]:
    """M' = M * (1 - E) with E the left half of every image; returns the samples and E."""
    net, _ = load_checkpoint(ckpt)
    x, y = data.tensors()
    with torch.no_grad():
        m = torch.nn.functional.interpolate(net.forward_all(x).att_map, size=(28, 28),
                                            mode="bilinear", align_corners=False)
    e = torch.zeros(1, 1, 28, 28)
    e[..., :14] = 1
    return EditedSamples(x, y, m * (1 - e)), e


def test_map_loss_falls_and_map_moves_toward_the_edit(tiny_abn_dir, data, tmp_path):
    edited, e = removal_edits(tiny_abn_dir, data)
    train_set = EditedSet(edited, None, FMNIST_CLASSES, ArraySet(data).input)
    cfg = FinetuneConfig(gamma=5.0, epochs=12, lr=0.05, batch_size=16, augment=False, steps=None,
                         **PAPER)
    before_net, _ = load_checkpoint(tiny_abn_dir)
    before = measure(before_net, ArraySet(data), edited)
    out = finetune(tiny_abn_dir, tmp_path / "ft", train_set, ArraySet(data), cfg, progress=False)
    after_net, card = load_checkpoint(out)
    after = measure(after_net, ArraySet(data), edited)
    assert after["map_loss"] < 0.5 * before["map_loss"]
    assert after["map_agreement"] > before["map_agreement"]

    def removed_mass(net):  # attention left where the edit removed it
        with torch.no_grad():
            m = torch.nn.functional.interpolate(net.forward_all(edited.x).att_map, size=(28, 28),
                                                mode="bilinear", align_corners=False)
        return float((m * e).mean())
    assert removed_mass(after_net) < 0.5 * removed_mass(before_net)
    assert card["config"]["init"] == str(tiny_abn_dir) and "metrics" in card


def test_feature_extractor_stays_frozen_unless_asked(tiny_abn_dir, data, tmp_path):
    edited, _ = removal_edits(tiny_abn_dir, data)
    train_set = EditedSet(edited, ArraySet(data), FMNIST_CLASSES, ArraySet(data).input)
    start, _ = load_checkpoint(tiny_abn_dir)

    def features(net):
        return {f"{i}.{k}": v.clone() for i, m in enumerate(feature_modules(net))
                for k, v in m.state_dict().items()}
    for freeze in (True, False):
        cfg = FinetuneConfig(epochs=1, batch_size=32, steps=None,
                             **{**PAPER, "freeze_features": freeze})
        net, _ = load_checkpoint(finetune(tiny_abn_dir, tmp_path / f"ft{freeze}", train_set,
                                          ArraySet(data), cfg, progress=False))
        same = all(torch.equal(a, b) for a, b in zip(features(start).values(), features(net).values()))
        assert same is freeze  # weights and BatchNorm running statistics alike
        assert not torch.equal(net.att_conv.weight, start.att_conv.weight)


def test_mask_perception_blocks_removed_regions(tiny_abn_dir, data, tmp_path):
    edited, _ = removal_edits(tiny_abn_dir, data)
    cfg = FinetuneConfig(epochs=1, batch_size=32, steps=None, **{**PAPER, "perception": "mask"})
    out = finetune(tiny_abn_dir, tmp_path / "mask", EditedSet(edited, None, FMNIST_CLASSES,
                                                               ArraySet(data).input),
                   ArraySet(data), cfg, progress=False)
    net, card = load_checkpoint(out)
    assert card["arch_kwargs"]["residual"] is False and net.residual is False
    x = edited.x[:8]
    with torch.no_grad():  # with M' = 0 no image information reaches the prediction
        logits = net(x, att=torch.zeros(8, 1, 28, 28))
        paper = build("abn_resnet", {**card["arch_kwargs"], "residual": True})
        paper.load_state_dict(net.state_dict())
        paper_logits = paper.eval()(x, att=torch.zeros(8, 1, 28, 28))
    assert torch.allclose(logits, logits[:1].expand_as(logits), atol=1e-5)
    assert not torch.allclose(paper_logits, paper_logits[:1].expand_as(paper_logits), atol=1e-3)


def test_edited_set_marks_edited_samples(tiny_abn_dir, data):
    edited, _ = removal_edits(tiny_abn_dir, data)
    few = EditedSamples(edited.x[:3], edited.y[:3], edited.maps[:3])
    ds = EditedSet(few, ArraySet(data), FMNIST_CLASSES, ArraySet(data).input)
    assert len(ds) == 3 + 64
    b = ds.__getitems__([0, 5, 2, 66])
    assert b["has_edit"].tolist() == [True, True, False, False]
    assert torch.equal(b["edit_map"][0], few.maps[0]) and b["edit_map"][2:].abs().sum() == 0
    assert b["x"].shape == (4, 1, 28, 28) and b["y"].tolist()[:2] == [0, 2]


def test_finetune_command_writes_checkpoint_and_report(tiny_abn_dir, fmnist_pngs, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    e = np.zeros((28, 28), np.uint8)
    e[:, :12] = 255
    for name in ("bag_0", "bag_1", "sneaker_0", "sneaker_1", "trouser_0", "trouser_1"):
        Image.fromarray(e).save(masks / f"{name}.png")
    edits = tmp_path / "edits"
    assert main(["edit", str(fmnist_pngs), "--model", str(tiny_abn_dir), "--edits", str(edits),
                 "--from-masks", str(masks)]) == 0
    store = EditStore(edits)  # one edit made with another model: skipped with a warning
    store.save(fmnist_pngs / "bag" / "bag_5.png", "other@0", 8, e / 255.0, e / 255.0)
    out = tmp_path / "ft"
    rc = main(["finetune", "--model", str(tiny_abn_dir), "--edits", str(edits), "--data",
               str(fmnist_pngs), "--epochs", "2", "--batch-size", "8", "--device", "cpu",
               "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "made with model other@0" in captured.err and "skipped" in captured.err
    rep = json.loads((out / "report.json").read_text())
    assert rep["edits_used"] == 6 and rep["edits_skipped"] == 1
    assert rep["unedited"] + rep["before"]["test_images"] + 6 == 24  # no image counted twice
    assert {"accuracy", "map_agreement", "map_loss", "per_class_accuracy"} <= set(rep["after"])
    assert [r["class"] for r in rep["per_class"]] == FMNIST_CLASSES
    md = (out / "report.md").read_text()
    assert "held-out accuracy" in md and "mean map agreement on 6 edited images" in md
    assert (out / "model.safetensors").is_file() and (out / "card.json").is_file()


def test_finetune_command_refuses_unusable_edits(tiny_abn_dir, tiny_resnet_dir, fmnist_pngs,
                                                 tmp_path, capsys):
    store = EditStore(tmp_path / "edits")
    z = np.zeros((28, 28), np.float32)
    store.save(fmnist_pngs / "bag" / "bag_3.png", "other@0", 8, z, z)
    rc = main(["finetune", "--model", str(tiny_abn_dir), "--edits", str(tmp_path / "edits"),
               "--data", str(fmnist_pngs), "--out", str(tmp_path / "ft")])
    err = capsys.readouterr().err
    assert rc == 1 and "error: --edits" in err and "no usable edits" in err
    assert not (tmp_path / "ft").exists()
    rc = main(["finetune", "--model", str(tmp_path), "--edits", str(tmp_path / "edits")])
    assert rc == 1 and "not a checkpoint folder" in capsys.readouterr().err
    rc = main(["finetune", "--model", str(tiny_resnet_dir), "--edits", str(tmp_path / "edits")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "is not an ABN" in err


@pytest.fixture(scope="module")
def coffee_edit(tmp_path_factory):
    """The sample coffee photo in an ImageNet-class folder and an edit of the ImageNet ABN's
    map that removes the spoon's attention (`explain edit --from-masks`)."""
    root = tmp_path_factory.mktemp("photo-edits")
    photos, masks = root / "photos" / "espresso", root / "masks"
    photos.mkdir(parents=True)
    masks.mkdir()
    shutil.copy(SAMPLES / "coffee.jpg", photos)
    e = np.zeros((224, 224), np.uint8)
    e[144:208, 112:176] = 255  # the spoon, in the model's 224 px view
    Image.fromarray(e).save(masks / "coffee.png")
    assert main(["edit", str(root / "photos"), "--model", "abn", "--edits", str(root / "edits"),
                 "--from-masks", str(masks)]) == 0
    return root


def test_the_imagenet_abn_is_edited_in_its_maps_own_range(coffee_edit):
    """Its map stays near 0.5; edits span that range (explain.edits.MapScale), so the editor
    shows a map with contrast and "remove" asks for values the map can take."""
    model = create_model("abn")
    scale = map_scale(model)
    assert 0.3 < scale.lo < 0.45 and 0.55 < scale.hi < 0.7
    x = model.input(load_image(SAMPLES / "coffee.jpg"))[0][None]
    units, probs = model_maps(model, x)
    with torch.no_grad():
        raw = upsample(model.net.forward_all(x).att_map, (224, 224))[:, 0]
    assert raw.max() - raw.min() < 0.25 and units.max() - units.min() > 0.5
    torch.testing.assert_close(scale.raw(units), raw, atol=1e-5, rtol=0)
    original, edited = EditStore(coffee_edit / "edits").load(
        next(iter(EditStore(coffee_edit / "edits").entries().values())))
    assert edited[150:200, 120:170].max() == 0 and np.allclose(edited[:100], original[:100])
    # the editor re-scores with the raw map: its own map gives its own prediction
    session = EditorSession(model, EditStore(coffee_edit / "edits"),
                            [str(coffee_edit / "photos")], progress=False)
    top = session.score(0, session.analyse(0)[1])[0]
    assert top["index"] == int(probs[0].argmax())
    assert top["probability"] == pytest.approx(float(probs[0].max()), abs=2e-3)  # 224 px and back


def test_finetuning_the_imagenet_abn_moves_only_its_map(coffee_edit, tmp_path, capsys):
    """The model's own settings (MAP_ONLY: the map's last convolution and normalisation,
    Adam) unless the command line says otherwise; the map takes the edit's shape, every
    other weight stays the pip-installed one."""
    out = tmp_path / "ft"
    rc = main(["finetune", "--model", "abn", "--edits", str(coffee_edit / "edits"), "--data",
               str(coffee_edit / "photos"), "--steps", "15", "--batch-size", "2",
               "--device", "cpu", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "no held-out images" in captured.err and "no held-out images" in captured.out
    rep = json.loads((out / "report.json").read_text())
    cfg = rep["config"]
    assert (cfg["scope"], cfg["optimizer"], cfg["lr"], cfg["steps"], cfg["batch_size"]) == \
        ("map", "adam", 0.001, 15, 2)  # the model's own, but what the command line chose
    b, a = rep["before"], rep["after"]
    assert a["map_correlation"] > b["map_correlation"] + 0.2
    assert b["edited_accuracy"] == a["edited_accuracy"] == 1.0  # still an espresso
    assert b["accuracy"] is None and "held-out accuracy (0 images) | - | -" in \
        (out / "report.md").read_text()
    tuned, _ = load_checkpoint(out)
    zoo, _ = load_checkpoint(checkpoint_dir("abn"))
    zoo_state = zoo.state_dict()
    changed = {k.split(".")[0] for k, v in tuned.state_dict().items()
               if not torch.equal(v, zoo_state[k])}
    assert changed == {"att_conv3", "bn_att3"}


def test_settings_come_from_the_command_line_then_the_model_then_the_defaults(tiny_abn):
    imagenet_abn = create_model("abn").net
    assert tuning_config(imagenet_abn, {"lr": 0.01}) == FinetuneConfig(**{**MAP_ONLY, "lr": 0.01})
    assert tuning_config(tiny_abn.net, {"epochs": 1}) == FinetuneConfig(epochs=1)
