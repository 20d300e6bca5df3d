"""The edit store: versioned, atomic, hash- and model-checked; edits from map and mask files."""
from __future__ import annotations

import json
import os
import shutil
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import explain.edits as edits_mod
from explain.cli.main import main
from explain.edits import (EditStore, folder_labels, import_files, model_id, model_maps,
                           read_map_file)
from explain.errors import ExplainError
from explain.pipeline import prepare


@pytest.fixture
def image(tmp_path, fmnist_pngs):
    dst = tmp_path / "imgs" / "bag" / "bag_0.png"
    dst.parent.mkdir(parents=True)
    shutil.copy(fmnist_pngs / "bag" / "bag_0.png", dst)
    return dst


def ramp(value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    original = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28)
    edited = original.copy()
    edited[:7, :7] = value
    return original, edited


def test_save_and_load_round_trip(tmp_path, image):
    store = EditStore(tmp_path / "edits")
    original, edited = ramp()
    e = store.save(image, "m@1", 8, original, edited)
    o2, e2 = store.load(store.entries()[e.key])
    assert np.abs(o2 - original).max() < 1e-4 and np.abs(e2 - edited).max() < 1e-4
    doc = json.loads((tmp_path / "edits" / "manifest.json").read_text())
    entry = doc["edits"][e.key]
    assert doc["format"] == 1 and entry["label"] == 8 and entry["model"] == "m@1"
    assert entry["image"] == str(image.resolve()) and len(entry["image_sha256"]) == 64
    assert store.find(image) == e and store.problem(e, "m@1") is None


def test_new_revision_replaces_old_files(tmp_path, image):
    store = EditStore(tmp_path / "edits")
    first = store.save(image, "m@1", 8, *ramp(0.0))
    second = store.save(image, "m@1", 8, *ramp(1.0))
    assert second.revision == 2 and len(store.entries()) == 1
    assert sorted(p.name for p in (tmp_path / "edits" / "maps").iterdir()) == sorted(
        [second.edited.split("/")[1], second.original.split("/")[1]])
    assert not (tmp_path / "edits" / first.edited).exists()
    assert store.load(second)[1][0, 0] == 1.0


def test_crash_mid_save_keeps_the_previous_edit(tmp_path, image, monkeypatch):
    store = EditStore(tmp_path / "edits")
    good = store.save(image, "m@1", 8, *ramp(0.0))
    manifest = (tmp_path / "edits" / "manifest.json").read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(edits_mod, "atomic_write_text", crash)
    with pytest.raises(OSError):
        store.save(image, "m@1", 8, *ramp(1.0))
    assert (tmp_path / "edits" / "manifest.json").read_bytes() == manifest
    assert store.entries()[good.key] == good
    assert store.load(good)[1][0, 0] == 0.0
    assert len(list((tmp_path / "edits" / "maps").iterdir())) == 2  # no orphan revision


def test_leftovers_of_a_killed_save_are_removed_when_the_store_is_opened(tmp_path, image):
    """A kill mid-save runs no clean-up: it leaves the manifest's temp file, a map file's
    temp file and whole map files of a revision the manifest never came to name."""
    root = tmp_path / "edits"
    good = EditStore(root).save(image, "m@1", 8, *ramp(0.0))
    kept = {p: p.read_bytes() for p in [root / "manifest.json", root / good.edited,
                                         root / good.original]}
    stem = good.edited.removeprefix("maps/").removesuffix(".r1.png")
    leftovers = [root / ".manifest.json.k2j4x9_a.tmp", root / "maps" / f"{stem}.r2.png",
                 root / "maps" / f"{stem}.r2.original.png",
                 root / "maps" / f".{stem}.r3.png.q0w9e8r7.tmp"]
    others = [root / "maps" / "notes.txt", root / "my.tmp", root / "maps" / "photo.png"]
    for p in leftovers + others:
        p.write_bytes(b"x")
    store = EditStore(root)
    assert [p for p in leftovers if p.exists()] == []
    assert all(p.read_bytes() == b"x" for p in others)  # not ours: never touched
    assert {p: p.read_bytes() for p in kept} == kept
    assert store.entries()[good.key] == good and store.load(good)[1][0, 0] == 0.0


def test_image_names_that_are_not_utf8_get_keys_and_edits(tmp_path, image):
    odd = image.with_name(os.fsdecode(b"bad\xff\xfename.png"))
    shutil.copy(image, odd)
    store = EditStore(tmp_path / "edits")
    edit = store.save(odd, "m@1", 8, *ramp(0.5))
    assert edit.key.startswith("bad_name-") and edit.key.isascii()
    reopened = EditStore(tmp_path / "edits")
    assert reopened.find(odd) == edit and reopened.problem(edit, "m@1") is None


def test_concurrent_saves_of_one_image_never_tear(tmp_path, image):
    store = EditStore(tmp_path / "edits")
    original = np.zeros((28, 28), np.float32)
    values = [i / 16 for i in range(16)]

    def save(v):
        for _ in range(3):
            EditStore(tmp_path / "edits").save(image, "m@1", 8, original,
                                               np.full((28, 28), v, np.float32))
    threads = [threading.Thread(target=save, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (edit,) = store.entries().values()
    assert edit.revision == 48
    m = store.load(edit)[1]
    assert len(np.unique(m)) == 1  # one whole save, not a mix of two
    assert min(abs(float(m[0, 0]) - v) for v in values) < 1e-4
    assert len(list((tmp_path / "edits").rglob("*.tmp"))) == 0
    assert len(list((tmp_path / "edits" / "maps").iterdir())) == 2


def test_other_model_and_changed_image_are_not_applied(tmp_path, image):
    store = EditStore(tmp_path / "edits")
    e = store.save(image, "m@1", 8, *ramp())
    assert "made with model m@1, not m@2" in store.problem(e, "m@2")
    good, warnings = store.usable("m@2")
    assert good == [] and len(warnings) == 1
    arr = np.asarray(Image.open(image)).copy()
    arr[0, 0] ^= 0xFF
    Image.fromarray(arr).save(image)
    assert "changed since it was edited (hash mismatch)" in store.problem(e, "m@1")
    assert store.usable("m@1")[0] == []


def test_corrupt_manifest_is_reported_and_left_alone(tmp_path):
    (tmp_path / "edits").mkdir()
    (tmp_path / "edits" / "manifest.json").write_text("{not json")
    with pytest.raises(ExplainError, match="corrupt edit manifest"):
        EditStore(tmp_path / "edits").entries()
    assert (tmp_path / "edits" / "manifest.json").read_text() == "{not json"


def test_map_files_of_any_depth_and_size_are_read_and_resized(tmp_path):
    g8 = np.zeros((56, 56), np.uint8)
    g8[:, 28:] = 255
    Image.fromarray(g8).save(tmp_path / "a.png")
    Image.fromarray((np.full((28, 28), 0.5) * 65535).astype(np.uint16)).save(tmp_path / "b.png")
    np.save(tmp_path / "c.npy", np.full((28, 28), 2.0))
    a = read_map_file(tmp_path / "a.png", (28, 28))
    assert a.shape == (28, 28) and a[:, :13].max() == 0 and a[:, 15:].min() == 1
    assert abs(read_map_file(tmp_path / "b.png")[3, 3] - 0.5) < 1e-4
    with pytest.raises(ExplainError, match=r"c.npy: map values must be finite and within \[0, 1\]"):
        read_map_file(tmp_path / "c.npy")


def test_folder_labels_match_class_names_loosely(tmp_path):
    classes = ["T-shirt/top", "Bag"]
    for rel in ("t_shirt_top/x.png", "bag/y.png", "z.png", "other/w.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    paths = [tmp_path / r for r in ("t_shirt_top/x.png", "bag/y.png", "z.png", "other/w.png")]
    assert folder_labels(paths, [str(tmp_path)], classes) == [0, 1, None, None]


def test_masks_become_removal_edits(tmp_path, tiny_abn, fmnist_pngs):
    masks = tmp_path / "masks"
    masks.mkdir()
    e = np.zeros((28, 28), np.uint8)
    e[:10, :10] = 255
    for name in ("bag_1", "sneaker_2"):
        Image.fromarray(e).save(masks / f"{name}.png")
    store = EditStore(tmp_path / "edits")
    stored, problems = import_files(store, tiny_abn, [str(fmnist_pngs)], masks, "remove")
    assert stored == 2 and problems == []
    path = fmnist_pngs / "bag" / "bag_1.png"
    edit = store.find(path)
    assert edit.label == tiny_abn.classes.index("Bag") and edit.model == model_id(tiny_abn)
    batch, _ = prepare(tiny_abn, [path])
    m = model_maps(tiny_abn, batch.x)[0][0].numpy()
    original, edited = store.load(edit)
    assert np.abs(original - m).max() < 1e-4
    assert edited[:10, :10].max() == 0 and np.abs(edited[10:] - m[10:]).max() < 1e-4


def test_edit_command_imports_maps_and_rejects_non_abn(tmp_path, tiny_abn_dir, tiny_resnet_dir,
                                                       fmnist_pngs, capsys):
    maps = tmp_path / "maps"
    maps.mkdir()
    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(maps / "trouser_3.png")
    (maps / "sub").mkdir()
    for d in (maps, maps / "sub"):  # the same stem twice: ambiguous
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(d / "bag_2.png")
    rc = main(["edit", str(fmnist_pngs), "--model", str(tiny_abn_dir), "--edits",
               str(tmp_path / "edits"), "--from-maps", str(maps)])
    out, err = capsys.readouterr()
    assert rc == 1 and "stored 1 edit(s)" in out and "bag_2.png: several files" in err
    edit = EditStore(tmp_path / "edits").find(fmnist_pngs / "trouser" / "trouser_3.png")
    assert abs(float(EditStore(tmp_path / "edits").load(edit)[1].mean()) - 128 / 255) < 1e-3
    rc = main(["edit", str(fmnist_pngs), "--model", str(tiny_resnet_dir), "--edits",
               str(tmp_path / "e2")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "not an Attention Branch Network" in err


def test_model_id_tells_weights_apart(tiny_abn):
    before = model_id(tiny_abn)
    with torch.no_grad():
        tiny_abn.net.fc.bias.add_(1.0)
    assert model_id(tiny_abn) != before and model_id(tiny_abn).startswith(tiny_abn.name + "@")
