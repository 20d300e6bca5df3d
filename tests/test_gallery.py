"""Gallery: inputs, the streaming build, manifest and journal, and the checks made before
any work (empty input, a method the model cannot give, unwritable or busy --out)."""
from __future__ import annotations

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explain.cli.main import main
from conftest import FMNIST_SPEC, tiny_checkpoint
from explain.errors import ExplainError
from explain.registry import create_model
from explain.gallery.build import Options, build_gallery
from explain.gallery.inputs import class_index, collect
from explain.gallery.manifest import Journal, read_rows, shard_path
from explain.gallery.outdir import Lock
from explain.gallery.writer import Style


@pytest.fixture
def folder(fmnist_pngs, tmp_path) -> Path:
    """The 24 sample PNGs in class folders, plus one corrupt file in `bag/`."""
    root = tmp_path / "in"
    shutil.copytree(fmnist_pngs, root)
    (root / "bag" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


def options(**kw) -> Options:
    return Options(methods=kw.pop("methods", ["abn", "gradcam"]), style=Style(28),
                   workers=kw.pop("workers", 0), batch_size=kw.pop("batch_size", 8),
                   progress=False, **kw)


def test_collect_reads_image_folder_labels_in_order(folder):
    items = collect(str(folder))
    assert len(items) == 25
    assert [i.index for i in items] == list(range(25))
    assert {i.truth for i in items} == {"bag", "sneaker", "trouser"}
    assert items[0].name == "bag/bag_0.png"
    assert len({i.id for i in items}) == 25
    assert len(collect(str(folder), limit=5)) == 5


def test_collect_list_file_and_glob(folder, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# chosen images\nin/bag/bag_1.png\tbag\n\nin/sneaker/sneaker_2.png\n"
                       "in/bag/bag_1.png\tbag\n")
    items = collect(str(listing))
    assert [(i.path, i.truth) for i in items] == [(folder / "bag" / "bag_1.png", "bag"),
                                                 (folder / "sneaker" / "sneaker_2.png", None)]
    assert len(collect(str(folder / "*" / "trouser_*.png"))) == 8


def test_collect_rejects_empty_or_missing_input(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExplainError, match="contains no images"):
        collect(str(tmp_path / "empty"))
    with pytest.raises(ExplainError, match="no such folder"):
        collect(str(tmp_path / "nowhere"))
    with pytest.raises(ExplainError, match="no images"):
        collect(str(tmp_path / "*.png"))


def test_class_index_matches_folder_names_to_model_classes():
    classes = ["T-shirt/top", "Trouser", "Bag"]
    assert class_index("t_shirt_top", classes) == 0
    assert class_index("bag", classes) == 2
    assert class_index("1", classes) == 1
    assert class_index("robot", classes) is None
    assert class_index(None, classes) is None


def test_build_writes_rows_files_manifest_and_contact_sheet(tiny_abn, folder, tmp_path):
    out = tmp_path / "g"
    summary = build_gallery(tiny_abn, collect(str(folder)), out, options(workers=1))
    assert (summary.rows, summary.new, summary.errors) == (25, 25, 1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["methods"] == ["abn", "gradcam"]
    rows = manifest["rows"]
    assert [r["index"] for r in rows] == list(range(25))
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and "broken.png" in bad[0]["error"] and bad[0]["files"] == {}
    for r in rows:
        if not r["error"]:
            assert set(r["files"]) == {"input", "abn", "gradcam"}
            assert all((out / f).stat().st_size > 0 for f in r["files"].values())
            assert r["label"] == tiny_abn.classes[r["pred"]]
            assert r["correct"] == (r["pred"] == r["truth_index"])
            assert 0 < r["prob"] <= 1 and r["top"][0][0] == r["label"]
    with open(out / "manifest.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [t["id"] for t in table] == [r["id"] for r in rows]
    assert table[0]["abn"] == rows[0]["files"]["abn"]
    from explain.gallery.contact import CELL, FONT, GAP, LABEL_W
    sheet = np.asarray(Image.open(out / "contact-sheet.png"))
    top, step = 2 * FONT + 3 * GAP, CELL + GAP
    assert sheet.shape == (top + 12 * step, LABEL_W + 3 * step, 3)  # first 12 of 24 readable
    first = [r for r in rows if not r["error"]][0]
    tile = np.asarray(Image.open(out / first["thumbs"]["gradcam"]).convert("RGB"))
    assert (sheet[top, LABEL_W + 2 * step] == tile[0, 0]).all()  # row 1, column gradcam
    page = (out / "index.html").read_text()
    assert rows[3]["files"]["gradcam"] in page and "</script>" in page
    data = json.loads(re.search(r'id="gallery-data"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert data["legend"].startswith("linear-gradient(to right, rgb(0,0,128) 0%")  # jet
    assert data["captions"] == {"abn": tiny_abn.caption("abn")}
    assert "attention" in data["captions"]["abn"]


def test_vector_maps_become_bar_charts(folder, tmp_path):
    """SE excitations are vectors, not maps: their column shows bar charts."""
    model = create_model(str(tiny_checkpoint(tmp_path / "se", arch="se_resnet")))
    out = tmp_path / "g"
    build_gallery(model, collect(str(folder), limit=4), out, options(methods=["se", "gradcam"]))
    row = read_rows(out)[0]
    white = {k: (np.asarray(Image.open(out / row["files"][k])) == 255).all(-1).mean()
             for k in ("input", "se", "gradcam")}
    assert white["se"] > 0.2 and white["input"] < 0.05 and white["gradcam"] < 0.05


def test_resume_skips_finished_rows_and_retries_failed(tiny_abn, folder, tmp_path):
    out = tmp_path / "g"
    items = collect(str(folder))
    build_gallery(tiny_abn, items[:10], out, options())
    first = {r["id"]: (out / r["files"]["abn"]).stat().st_ino for r in read_rows(out)
             if not r["error"]}
    with pytest.raises(ExplainError, match="pass --resume"):
        build_gallery(tiny_abn, items, out, options())
    with pytest.raises(ExplainError, match="other settings"):
        build_gallery(tiny_abn, items, out, options(methods=["gradcam"], resume=True))
    summary = build_gallery(tiny_abn, items, out, options(resume=True))
    assert (summary.rows, summary.skipped, summary.new) == (25, 9, 16)  # the error row again
    again = {r["id"]: (out / r["files"]["abn"]).stat().st_ino for r in read_rows(out)
             if r["id"] in first}
    assert again == first  # not rewritten


def test_resume_redoes_rows_whose_files_are_gone_or_torn(tiny_abn, folder, tmp_path):
    out = tmp_path / "g"
    items = collect(str(folder))[:6]
    build_gallery(tiny_abn, items, out, options())
    rows = read_rows(out)
    (out / rows[1]["files"]["gradcam"]).unlink()
    torn = out / rows[2]["files"]["input"]
    torn.write_bytes(torn.read_bytes()[:-5])
    summary = build_gallery(tiny_abn, items, out, options(resume=True))
    assert (summary.skipped, summary.new) == (4, 2)
    assert (out / rows[1]["files"]["gradcam"]).exists()


def test_torn_journal_line_is_skipped_and_isolated(tmp_path):
    Journal(tmp_path, 0).append([{"id": "a", "index": 0}])
    with open(shard_path(tmp_path, 0), "ab") as f:
        f.write(b'{"id": "b", "ind')  # killed mid-write
    journal = Journal(tmp_path, 0)
    journal.append([{"id": "c", "index": 2}])
    journal.close()
    assert [r["id"] for r in read_rows(tmp_path)] == ["a", "c"]


def test_second_run_on_a_busy_out_is_refused(tiny_abn, folder, tmp_path):
    out = tmp_path / "g"
    out.mkdir()
    lock = Lock(out)
    try:
        with pytest.raises(ExplainError, match="another `explain gallery` run"):
            build_gallery(tiny_abn, collect(str(folder)), out, options())
    finally:
        lock.release()
    assert not (out / "index.html").exists()
    assert build_gallery(tiny_abn, collect(str(folder), limit=3), out, options()).rows == 3


def cli(*args) -> int:
    return main(["gallery", *map(str, args), "--no-progress", "--workers", "0"])


def test_cli_method_the_model_cannot_give_fails_before_work(tiny_resnet_dir, folder, tmp_path,
                                                            capsys):
    out = tmp_path / "g"
    assert cli(folder, "--model", tiny_resnet_dir, "--methods", "abn,gradcam", "--out", out) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no native 'abn' map" in err
    assert not out.exists()


def test_cli_empty_input_and_unwritable_out(tiny_abn_dir, folder, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli(tmp_path / "empty", "--model", tiny_abn_dir, "--out", tmp_path / "g") == 1
    assert "contains no images" in capsys.readouterr().err
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    assert cli(folder, "--model", tiny_abn_dir, "--out", blocker / "g") == 1
    assert "not writable" in capsys.readouterr().err


def test_cli_builds_gallery_and_exits_nonzero_for_unreadable_rows(tiny_abn_dir, folder,
                                                                  tmp_path, capsys):
    out = tmp_path / "g"
    assert cli(folder, "--model", tiny_abn_dir, "--methods", "abn,gradcam", "--out", out,
               "--limit", "8", "--title", "Bags <&> more") == 0
    assert "8 rows" in capsys.readouterr().out
    page = (out / "index.html").read_text()
    assert "<title>Bags &lt;&amp;&gt; more</title>" in page
    assert cli(folder, "--model", tiny_abn_dir, "--methods", "abn,gradcam", "--out", out,
               "--resume") == 1
    captured = capsys.readouterr()
    assert "8 already done" in captured.out and "broken.png" in captured.err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority: Linux")
def test_loader_workers_give_way_to_parallel_regions(folder):
    """Decoding workers run below the model's priority when its streams have parallel
    regions, never the main process (gallery/background.py)."""
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from explain.gallery.background import NICE, lower_priority
    from explain.gallery.dataset import loader
    items = collect(str(folder))
    assert loader(items, FMNIST_SPEC, 8, 1, yield_to_model=True).worker_init_fn is lower_priority
    assert loader(items, FMNIST_SPEC, 8, 1).worker_init_fn is None
    assert loader(items, FMNIST_SPEC, 8, 0, yield_to_model=True).worker_init_fn is None
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with ThreadPoolExecutor(1, initializer=lower_priority) as pool:
        nice = pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        assert nice.result() == min(19, own + NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # untouched


def test_a_model_that_cannot_be_copied_runs_one_stream(folder, tiny_abn_dir, tmp_path, caplog):
    """A network refusing deepcopy (holding a lock, say) still gets its gallery, on one
    stream, with a warning saying why."""
    import threading

    from explain.registry import create_model
    model = create_model(tiny_abn_dir)
    model.net.lock = threading.Lock()  # deepcopy: cannot pickle '_thread.lock' object
    summary = build_gallery(model, collect(str(folder)), tmp_path / "g", options(streams=2))
    assert summary.rows == summary.new and summary.new > 0
    assert "cannot be copied" in caplog.text and "one stream" in caplog.text


def test_streams_run_jobs_on_separate_replicas_in_order(tiny_abn_dir):
    """Each stream owns a replica (hooks on one never see another's batches), results come
    back in submission order, and torch's thread setting is shared out and restored."""
    import threading
    import time

    import torch

    from explain.gallery.streams import Streams
    from explain.registry import create_model
    model = create_model(tiny_abn_dir)
    before = torch.get_num_threads()
    nets = {}
    lock = threading.Lock()
    x = torch.randn(2, 1, 28, 28)

    def job(k: int):
        def run(replica):
            with lock:
                nets[id(replica.net)] = replica.net
            time.sleep(0.02 * (k % 3 == 0))  # finish out of order
            return [(k, replica.net(x).shape[0], torch.get_num_threads())]
        return run

    streams = Streams(model, 2)
    with streams.sharing_threads():
        out = []
        for k in range(12):
            out += streams.submit(job(k))
        out += streams.close()
    assert [k for k, _, _ in out] == list(range(12))
    assert len(nets) == 2 and id(model.net) in nets  # the model itself and one copy
    assert all(n == max(1, before // 2) for _, _, n in out)
    assert torch.get_num_threads() == before
    (copy,) = (net for key, net in nets.items() if key != id(model.net))
    for p, q in zip(model.net.parameters(), copy.parameters()):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()  # same weights, not shared


@pytest.mark.parametrize("n, size, parts", [(2000, 64, 2), (150, 64, 2), (24, 8, 3),
                                            (5, 64, 4), (64, 64, 1), (1, 8, 2), (0, 8, 2)])
def test_even_batches_cover_the_input_in_order_and_end_together(n, size, parts):
    """At most `size` a batch, in input order; the batches before the last ones within one
    of each other and as many as a multiple of the streams; with several streams the last
    half round in quarter-size batches."""
    from explain.gallery.dataset import EvenBatches
    plan = EvenBatches(n, size, parts)
    batches = list(plan)
    assert len(batches) == len(plan)
    assert [i for b in batches for i in b] == list(range(n))
    sizes = [len(b) for b in batches]
    assert all(1 <= s <= size for s in sizes)
    small = max(1, size // 4)
    head = sizes[:len(sizes) - -(-plan.tail // small)]
    if head:
        assert max(head) - min(head) <= 1 and len(head) % parts == 0
    if parts > 1 and n >= 2 * parts * small:
        assert sizes[-2 * parts:] == [small] * (2 * parts)
    if parts == 1:
        assert plan.tail == 0 and len(batches) == -(-n // size)


def test_tiles_are_written_in_place_when_new_and_replaced_whole_when_not(tmp_path, monkeypatch):
    """New tiles (nothing refers to them before the journal line) go straight to their
    name; a tile a journaled row may show is replaced by rename, never rewritten in place;
    a write that fails leaves nothing and names the tile."""
    import errno
    import os

    import explain.atomic as atomic
    new, old = str(tmp_path / "a" / "new.png"), tmp_path / "a" / "old.png"
    old.parent.mkdir()
    old.write_bytes(b"old")
    inode = old.stat().st_ino
    made = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a: made.append(os.path.basename(p)) or real_open(p, *a))
    atomic.write_journaled_files([(new, b"new tile"), (str(old), b"old tile")])
    monkeypatch.undo()
    assert Path(new).read_bytes() == b"new tile" and old.read_bytes() == b"old tile"
    assert made[0] == "new.png" and any(m.startswith(".old.png.") for m in made)
    assert old.stat().st_ino != inode  # a new file renamed over the old one
    assert not list(tmp_path.rglob("*.tmp"))

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "write", full)
    gone = str(tmp_path / "a" / "gone.png")
    with pytest.raises(OSError) as e:
        atomic.write_journaled_files([(gone, b"tile")])
    assert e.value.filename == gone and e.value.errno == errno.ENOSPC
    assert not os.path.exists(gone)
