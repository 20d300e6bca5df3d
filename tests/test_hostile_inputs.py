"""Input folders a careful user can still meet: file names that are not UTF-8 or hold
control characters and markup, unreadable sub-folders, FIFOs and broken links among the
images. Each command goes on with the rest, prints printable names, says what each bad
entry is, counts it and exits non-zero."""
from __future__ import annotations

import errno
import io
import json
import os
import shutil
import sys

import numpy as np
import pytest

from explain.cli.main import main
from explain.edits import EditStore
from explain.editor.server import EditorSession
from explain.gallery.manifest import read_rows

ODD = [os.fsdecode(b"bad\xff\xfename.png"), "two\nlines.png", "<img src=x onerror=alert(1)>.png"]
SHOWN = ["bad\\xff\\xfename.png", "two\\x0alines.png", "<img src=x onerror=alert(1)>.png"]


@pytest.fixture
def odd_folder(tmp_path, fmnist_pngs):
    """Class folders with images under odd names, next to ordinary ones."""
    root = tmp_path / "in"
    shutil.copytree(fmnist_pngs, root)
    for i, name in enumerate(ODD):
        shutil.copy(fmnist_pngs / "bag" / f"bag_{i}.png", root / "bag" / name)
    return root


def run_with_strict_stdout(monkeypatch, argv: list[str]) -> tuple[int, str]:
    """main(argv) printing to stdout as a terminal with a strict UTF-8 locale has it (no
    surrogateescape); its exit code and output."""
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, "utf-8", errors="strict", write_through=True)
    monkeypatch.setattr(sys, "stdout", stdout)
    rc = main(argv)
    return rc, raw.getvalue().decode("utf-8")


def test_explain_folder_with_odd_names_prints_them_escaped(odd_folder, tiny_abn_dir, tmp_path,
                                                           monkeypatch):
    rc, text = run_with_strict_stdout(monkeypatch, [
        str(odd_folder / "bag"), "--model", str(tiny_abn_dir), "--out", str(tmp_path / "o"),
        "--methods", "abn"])
    assert rc == 0
    for shown in SHOWN:
        assert f"{odd_folder / 'bag' / shown}: " in text
    assert len(text.splitlines()) == 2 * (8 + len(ODD))  # a line and a panel line an image


def test_explain_json_names_odd_files_in_valid_json(odd_folder, tiny_abn_dir, tmp_path,
                                                    monkeypatch):
    rc, text = run_with_strict_stdout(monkeypatch, [
        str(odd_folder / "bag"), "--model", str(tiny_abn_dir), "--out", str(tmp_path / "o"),
        "--methods", "abn", "--json"])
    assert rc == 0
    records = [json.loads(line) for line in text.splitlines()]
    names = {os.path.basename(r["image"]) for r in records}
    assert set(SHOWN) <= names and len(records) == 8 + len(ODD)


def test_gallery_with_odd_names_is_built_and_safe(odd_folder, tiny_abn_dir, tmp_path, capsys):
    out = tmp_path / "g"
    rc = main(["gallery", str(odd_folder), "--model", str(tiny_abn_dir), "--out", str(out),
               "--workers", "1", "--no-progress", "--methods", "abn"])
    assert rc == 0, capsys.readouterr().err
    rows = read_rows(out)
    assert len(rows) == 24 + len(ODD) and not any(r["error"] for r in rows)
    names = {r["name"] for r in rows}
    assert {f"bag/{s}" for s in SHOWN} <= names
    for r in rows:  # tiles get ASCII names whatever the image's name
        assert all(f.isascii() and (out / f).is_file() for f in r["files"].values())
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<img src=x" not in page  # markup in a name stays text
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["rows"]) == len(rows)


def test_gallery_list_file_with_a_name_that_is_not_utf8(odd_folder, tiny_abn_dir, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"in/bag/bad\xff\xfename.png\tbag\nin/bag/bag_5.png\tbag\n")
    out = tmp_path / "g"
    assert main(["gallery", str(listing), "--model", str(tiny_abn_dir), "--out", str(out),
                 "--workers", "0", "--no-progress", "--methods", "abn"]) == 0
    assert [r["name"] for r in read_rows(out)] == ["in/bag/bad\\xff\\xfename.png",
                                                     "in/bag/bag_5.png"]


def unlistable(monkeypatch, folder):
    """`folder` fails to list, as an unreadable folder does for a user who is not root."""
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == os.fspath(folder):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)


@pytest.fixture
def odd_entries(tmp_path, fmnist_pngs, monkeypatch):
    """Class folders plus an unreadable one, a FIFO and a broken link named as images."""
    root = tmp_path / "in"
    shutil.copytree(fmnist_pngs, root)
    (root / "coat").mkdir()
    shutil.copy(fmnist_pngs / "bag" / "bag_0.png", root / "coat" / "coat_0.png")
    unlistable(monkeypatch, root / "coat")
    os.mkfifo(root / "bag" / "pipe.png")
    (root / "trouser" / "gone.png").symlink_to(root / "trouser" / "nowhere.png")
    return root


def test_explain_reports_and_counts_unreadable_entries(odd_entries, tiny_abn_dir, tmp_path,
                                                       capsys):
    rc = main([str(odd_entries), "--model", str(tiny_abn_dir), "--out", str(tmp_path / "o"),
               "--methods", "abn"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"error: {odd_entries / 'coat'}: folder cannot be read (Permission denied)" in err
    assert f"error: {odd_entries / 'bag' / 'pipe.png'}: is a FIFO (named pipe)" in err
    assert f"error: {odd_entries / 'trouser' / 'gone.png'}: broken symbolic link" in err
    assert "3 of 27 image(s) failed" in err


def test_gallery_marks_unreadable_entries_as_error_rows(odd_entries, tiny_abn_dir, tmp_path,
                                                        capsys):
    out = tmp_path / "g"
    rc = main(["gallery", str(odd_entries), "--model", str(tiny_abn_dir), "--out", str(out),
               "--workers", "0", "--no-progress", "--methods", "abn"])
    assert rc == 1
    assert "3 unreadable" in capsys.readouterr().out
    errors = {r["name"]: r["error"] for r in read_rows(out) if r["error"]}
    assert set(errors) == {"coat", "bag/pipe.png", "trouser/gone.png"}
    assert "folder cannot be read (Permission denied)" in errors["coat"]
    assert sum(1 for r in read_rows(out) if r["truth"] == "bag" and not r["error"]) == 8


def test_editor_queues_and_saves_images_with_odd_names(odd_folder, tiny_abn, tmp_path):
    session = EditorSession(tiny_abn, EditStore(tmp_path / "edits"), [str(odd_folder / "bag")],
                            progress=False)
    queue = session.queue()
    assert set(SHOWN) <= {q["name"] for q in queue}
    i = next(q["index"] for q in queue if q["name"] == SHOWN[0])
    json.dumps(session.item(i), ensure_ascii=False).encode("utf-8")  # printable, encodable
    edit = session.save(i, np.zeros((28, 28), np.float32), 8)
    assert EditStore(tmp_path / "edits").find(session.items[i].path) == edit
