"""Output that cannot be written: --out naming a file or lying under one, a read-only or
unwritable folder, a disk that fills at the start or in the middle. Every command says in one
line which path failed and why, exits non-zero, and leaves what it made valid; a gallery or a
training run resumes once space is back.

Tests run as root, which ignores permission bits: refusals are injected where the OS would
give them (explain.atomic's calls into `os`, `tempfile`), never faked by chmod.
"""
from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
from safetensors.torch import load_file

import explain.atomic as atomic_mod
import explain.gallery.manifest as manifest_mod
from explain.cli.main import main
from explain.edits import EditStore, model_id
from explain.gallery.manifest import complete_png, read_rows

TINY = json.dumps({"depths": [1, 1, 1], "widths": [4, 8, 8]})


class FullDisk:
    """`os` as seen from a module writing to a disk that fills after `room` writes: every
    later `write` or `fsync` fails with ENOSPC and no file name, as the kernel reports it."""

    def __init__(self, room: int):
        self.room = room

    def __getattr__(self, name):
        return getattr(os, name)

    def _spend(self) -> None:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= 1

    def write(self, fd, data):
        self._spend()
        return os.write(fd, data)

    def fsync(self, fd):
        self._spend()
        return os.fsync(fd)


def fill_disk(monkeypatch, room: int) -> FullDisk:
    disk = FullDisk(room)
    monkeypatch.setattr(atomic_mod, "os", disk)
    monkeypatch.setattr(manifest_mod, "os", disk)  # the gallery's journal
    return disk


@pytest.fixture
def edits(tmp_path, tiny_abn, fmnist_pngs):
    """An edit store holding two edits made with the tiny ABN."""
    store = EditStore(tmp_path / "edits")
    for name, label in (("bag/bag_0.png", 8), ("sneaker/sneaker_1.png", 7)):
        m = np.full((28, 28), 0.5, np.float32)
        store.save(fmnist_pngs / name, model_id(tiny_abn), label, m, m * 0)
    return store.root


def command(name: str, out, tiny_abn_dir, fmnist_pngs, edits=None) -> list[str]:
    model = ["--model", str(tiny_abn_dir)]
    return {
        "explain": [str(fmnist_pngs / "bag"), *model, "--out", str(out)],
        "gallery": ["gallery", str(fmnist_pngs), *model, "--out", str(out), "--workers", "0",
                    "--no-progress", "--batch-size", "4"],
        "train": ["train", "--arch", "abn_resnet", "--data", str(fmnist_pngs), "--out", str(out),
                  "--epochs", "1", "--batch-size", "8", "--arch-kwargs", TINY, "--device", "cpu",
                  "--precision", "fp32"],
        "finetune": ["finetune", *model, "--edits", str(edits), "--data", str(fmnist_pngs),
                     "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--out", str(out)],
        "edit": ["edit", str(fmnist_pngs), *model, "--edits", str(out), "--from-maps",
                 str(fmnist_pngs / "bag")],
    }[name]


COMMANDS = ["explain", "gallery", "train", "finetune", "edit"]


def with_out(argv: list[str], out) -> list[str]:
    i = argv.index("--out") + 1
    return argv[:i] + [str(out)] + argv[i + 1:]


def one_error(err: str, *needles: str) -> str:
    """The one `error:` line of `err`, which must hold every needle; no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(n in lines[0] for n in needles), (lines[0], needles)
    return lines[0]


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("where, reason", [("file", "exists and is not a folder"),
                                           ("under a file", "Not a directory")])
def test_out_that_is_a_file_or_under_one_is_one_line(name, where, reason, tmp_path, capsys,
                                                     tiny_abn_dir, fmnist_pngs, edits):
    blocker = tmp_path / "taken.txt"
    blocker.write_text("a file, not a folder")
    out = blocker if where == "file" else blocker / "out"
    rc = main(command(name, out, tiny_abn_dir, fmnist_pngs, edits))
    assert rc == 1
    one_error(capsys.readouterr().err, str(out), reason)
    assert blocker.read_text() == "a file, not a folder"


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_out_that_refuses_writes_from_the_start_is_one_line(name, code, tmp_path, capsys,
                                                            monkeypatch, tiny_abn_dir,
                                                            fmnist_pngs, edits):
    def refused(*args, dir=None, **kw):
        raise OSError(code, os.strerror(code), os.path.join(dir, "tmpabc123"))
    monkeypatch.setattr(atomic_mod.tempfile, "TemporaryFile", refused)
    out = tmp_path / "out"
    rc = main(command(name, out, tiny_abn_dir, fmnist_pngs, edits))
    assert rc == 1
    one_error(capsys.readouterr().err, str(out), "not writable", os.strerror(code))


@pytest.mark.parametrize("name, room", [("explain", 2), ("train", 0), ("finetune", 1),
                                        ("edit", 1)])
def test_disk_full_in_the_middle_names_the_file_and_exits_nonzero(
        name, room, tmp_path, capsys, monkeypatch, tiny_abn_dir, fmnist_pngs, edits):
    out = tmp_path / "out"
    fill_disk(monkeypatch, room)
    rc = main(command(name, out, tiny_abn_dir, fmnist_pngs, edits))
    assert rc == 1
    line = one_error(capsys.readouterr().err, "No space left on device", str(out))
    assert "None" not in line and ".tmp" not in line
    assert not list(out.rglob("*.tmp"))  # nothing half-written left behind


def test_training_killed_by_a_full_disk_resumes_when_space_is_back(tmp_path, capsys,
                                                                  monkeypatch, fmnist_pngs):
    out = tmp_path / "run"
    argv = command("train", out, None, fmnist_pngs) + ["--epochs", "2"]
    full = tmp_path / "full"
    assert main(with_out(argv, full)) == 0
    disk = fill_disk(monkeypatch, room=3)  # the first checkpoint fits, the second does not
    assert main(argv) == 1
    one_error(capsys.readouterr().err, "No space left on device", str(out))
    disk.room = 10**9
    assert main(argv + ["--resume"]) == 0
    assert "resuming" in capsys.readouterr().err
    a, b = load_file(full / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def embedded_rows(out) -> list[dict]:
    html = (out / "index.html").read_text()
    start = html.index('<script type="application/json" id="gallery-data">') + 50
    return json.loads(html[start:html.index("</script>", start)])["rows"]


def test_gallery_on_a_disk_that_fills_stays_consistent_and_resumes(tmp_path, capsys,
                                                                   monkeypatch, tiny_abn_dir,
                                                                   fmnist_pngs):
    """4 images a batch, 3 tiles an image: room for a few batches, then the disk is full."""
    argv = command("gallery", tmp_path / "g", tiny_abn_dir, fmnist_pngs)
    argv += ["--methods", "abn,gradcam"]
    full = tmp_path / "full"
    assert main(with_out(argv, full)) == 0
    capsys.readouterr()
    out = tmp_path / "g"
    disk = fill_disk(monkeypatch, room=40)
    assert main(argv) == 1
    err = capsys.readouterr().err
    line = one_error(err, "No space left on device", str(out))
    assert "None" not in line and ("cannot write" in line or "shard-" in line)
    journal = {r["id"]: r for r in read_rows(out)}
    assert 0 < len(journal) < 24
    for row in journal.values():  # the journal vouches only for rows whose files are whole
        assert all(complete_png(out / f) for f in row["files"].values())
    if (out / "index.html").exists():  # the page shows what the journal vouches for
        for row in embedded_rows(out):
            assert row["id"] in journal
            assert all(complete_png(out / f) for f in row["files"].values())
    disk.room = 10**9  # space is back
    assert main(argv + ["--resume"]) == 0
    assert f"{len(journal)} already done" in capsys.readouterr().out
    rows = embedded_rows(out)
    keep = ("id", "name", "files", "error")
    assert [{k: r[k] for k in keep} for r in rows] == [{k: r[k] for k in keep}
                                                       for r in embedded_rows(full)]
    assert all(complete_png(out / f) for r in rows for f in r["files"].values())
    assert not list(out.rglob("*.tmp"))
