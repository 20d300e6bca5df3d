"""The training loop: losses fall, resume is exact, checkpoints survive failed writes,
ImageFolders skip bad images."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from explain.checkpoint import save_checkpoint
from explain.datasets import fashion_mnist
from explain.losses import LOSSES
from explain.models import build, get_arch
from explain.train import TrainConfig, train
from explain.trainsets import ArraySet, scan_folder


@pytest.mark.parametrize("arch", ["abn_resnet", "resnet"])
def test_two_steps_lower_the_loss(arch):
    torch.manual_seed(0)
    net = build(arch, get_arch(arch).kwargs(10, 1, 28, depths=(1, 1, 1), widths=(4, 8, 8)))
    data = ArraySet(fashion_mnist("train", limit=64))
    batch = data.__getitems__(list(range(64)))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(3):
        loss, _, _ = LOSSES[get_arch(arch).loss](net, batch["x"], batch["y"], batch)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[2] < losses[0]


def small_sets():
    tr, te = fashion_mnist("train", limit=320), fashion_mnist("test", limit=64)
    return ArraySet(tr), ArraySet(te)


def config(out, **kw):
    base = dict(epochs=2, batch_size=32, lr=0.05, precision="fp32", checkpoint_every=0,
                arch_kwargs={"depths": (1, 1, 1), "widths": (4, 8, 8)})
    return TrainConfig(arch="abn_resnet", data="fashion-mnist", out=str(out), **{**base, **kw})


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    tr, te = small_sets()
    full = train(config(tmp_path / "full"), train_set=tr, test_set=te, progress=False)
    cut = config(tmp_path / "cut", max_steps=13)  # stops mid-epoch 2 (10 steps an epoch)
    train(cut, train_set=tr, test_set=te, progress=False)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    train(config(tmp_path / "cut", resume=True), train_set=tr, test_set=te, progress=False)
    a, b = load_file(full / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_card_records_what_a_reader_needs(tmp_path):
    import json
    tr, te = small_sets()
    out = train(config(tmp_path / "m", epochs=1), train_set=tr, test_set=te, progress=False)
    card = json.loads((out / "card.json").read_text())
    assert card["arch"] == "abn_resnet" and card["seed"] == 0 and card["data"] == "fashion-mnist"
    assert card["native_maps"] == ["abn"]  # what `explain models` lists, without torch
    assert 0 <= card["metrics"]["test_accuracy"] <= 1 and card["metrics"]["test_images"] == 64
    assert card["input"]["size"] == [28, 28] and len(card["classes"]) == 10


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    net = build("resnet", get_arch("resnet").kwargs(10, 1, 28, depths=(1, 1, 1), widths=(4, 8, 8)))
    save_checkpoint(tmp_path, net, {"arch": "resnet"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with torch.no_grad():
        net.fc.weight.add_(1.0)

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("explain.atomic.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, net, {"arch": "resnet", "changed": True})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp files left


def test_imagefolder_skips_corrupt_images_and_empty_classes(tmp_path, caplog):
    for cls in ("cat", "dog", "empty"):
        (tmp_path / cls).mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(tmp_path / "cat" / f"{i}.png")
        Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "dog" / f"{i}.png")
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    files, classes, skipped = scan_folder(tmp_path)
    err = caplog.text  # warnings go through logging (the CLI shows them on stderr)
    assert classes == ["cat", "dog", "empty"] and len(files) == 6 and skipped == 1
    assert "broken.jpg" in err and "class 'empty' has no images" in err


def test_imagefolder_reports_a_class_folder_it_cannot_read(tmp_path, monkeypatch, caplog):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / cls / "0.png")
    real = os.scandir

    def scandir(path="."):  # as for a user who is not root: tests run as root
        if os.fspath(path) == os.fspath(tmp_path / "dog"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)
    files, classes, skipped = scan_folder(tmp_path)
    err = caplog.text
    assert classes == ["cat", "dog"] and len(files) == 1 and skipped == 1
    assert f"skipped {tmp_path / 'dog'}: folder cannot be read (Permission denied)" in err


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler meant for errors catches it."""


def test_a_kill_between_any_two_writes_never_replays_an_epoch(tmp_path, monkeypatch):
    """Kill the run after each file operation in turn (weights, card, optimizer state, the
    switch, the final checkpoint), resume: the final weights equal an uninterrupted run's,
    and no more is trained again than the steps since the last checkpoint."""
    tr, te = ArraySet(fashion_mnist("train", limit=64)), ArraySet(fashion_mnist("test", limit=16))
    steps_per_epoch, epochs = 2, 3
    steps = []
    own_loss = LOSSES[get_arch("abn_resnet").loss]

    def counting_loss(*args, **kw):
        steps.append(1)
        return own_loss(*args, **kw)

    def run(out, **kw):
        return train(config(out, epochs=epochs, **kw), train_set=tr, test_set=te,
                     progress=False, loss_fn=counting_loss)

    real_replace, replaced = os.replace, []

    def replace(src, dst, **kw):
        real_replace(src, dst, **kw)
        replaced.append(dst)
        if len(replaced) == kill_after:
            raise Killed

    kill_after = 0
    monkeypatch.setattr(os, "replace", replace)
    reference = load_file(run(tmp_path / "full") / "model.safetensors")
    writes = len(replaced)
    assert writes >= 2 * epochs + 2 and len(steps) == steps_per_epoch * epochs
    for kill_after in range(1, writes):
        out = tmp_path / f"kill{kill_after}"
        replaced.clear()
        steps.clear()
        with pytest.raises(Killed):
            run(out)
        done = len(steps)
        run(out, resume=True)
        final = load_file(out / "model.safetensors")
        assert final.keys() == reference.keys()
        for k in final:
            assert torch.equal(final[k], reference[k]), (kill_after, replaced[-1], k)
        assert len(steps) - steps_per_epoch * epochs <= steps_per_epoch, (kill_after, done)
