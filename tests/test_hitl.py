"""The edit -> fine-tune loop's pieces: counterfactual refills, the bounded mixed schedule,
domain checks on edits, `explain data export`, and the Decoy-FashionMNIST benchmark run end
to end on a tiny configuration, interrupted and resumed."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explain.cli.main import main
from explain.datasets import FMNIST_CLASSES, decoy_fmnist
from explain.finetune import EditedSamples, EditedSet, counterfactual_fill
from explain.trainsets import ArraySet

ROOT = Path(__file__).resolve().parents[1]


def test_counterfactual_fill_replaces_only_the_region():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8)
    region = torch.zeros(64, 1, 8, 8, dtype=torch.bool)
    region[:, :, :2, :2] = True
    for fill in ("flat", "donor", "mix"):
        y = counterfactual_fill(x, region, g, fill)
        assert torch.equal(y[~region], x[~region])  # nothing outside the region moves
        patch = y[:, :, :2, :2].flatten(1)
        flat = (patch == patch[:, :1]).all(1)
        donor = torch.stack([(patch[i] == x[:, :, :2, :2].flatten(1)).all(1).any()
                             for i in range(64)])
        if fill == "flat":
            assert flat.all() and not torch.equal(y, x)
        if fill == "donor":
            assert donor.all()
        if fill == "mix":  # about half each
            assert 10 < int(flat.sum()) < 54 and 10 < int(donor.sum()) < 54


def edited_set(n_edit: int = 6, n_base: int = 40, **kw) -> tuple[EditedSet, torch.Tensor]:
    data = decoy_fmnist("train", 0, limit=n_edit + n_base)
    x, y = data.subset(slice(0, n_edit)).tensors()
    e = torch.from_numpy(data.masks[:n_edit, None].astype(np.float32))
    m = torch.full((n_edit, 1, 28, 28), 0.8)
    edited = EditedSamples(x, y, m * (1 - e), original=m)
    base = ArraySet(data.subset(slice(n_edit, None)))
    return EditedSet(edited, base, FMNIST_CLASSES, base.input, **kw), e


def test_mixed_schedule_shares_and_resumes_exactly():
    ds, _ = edited_set(share=0.5, steps=5)
    assert ds.num_batches(8) == 5
    batches = list(ds.loader(8, seed=3, epoch=1))
    assert len(batches) == 5
    assert all(int(b["has_edit"].sum()) == 4 and len(b["y"]) == 8 for b in batches)
    tail = list(ds.loader(8, seed=3, epoch=1, start=2))  # a resumed epoch sees the same batches
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(batches[2:], tail))
    other = list(ds.loader(8, seed=3, epoch=2))
    assert not torch.equal(batches[0]["x"], other[0]["x"])
    only, _ = edited_set(share=1.0, steps=2)  # every sample edited, unedited ones present
    assert all(b["has_edit"].all() for b in only.loader(8, seed=0, epoch=0))


def test_counterfactual_batches_refill_the_removed_decoy():
    ds, e = edited_set(n_edit=6, n_base=10, share=1.0, steps=4, counterfactual="flat")
    assert torch.equal(ds.region, e.bool())  # removed = where M' fell below half of M
    decoy_values = set(ds.edited.x.masked_select(e.bool()).tolist())
    for b in ds.loader(6, seed=0, epoch=0):
        decoy = b["edit_map"] == 0  # where the edit removed attention: the decoy patch
        patches = b["x"].masked_select(decoy).view(len(b["x"]), -1)
        assert (patches == patches[:, :1]).all()  # one flat value per image ...
        assert not decoy_values & set(patches[:, 0].tolist())  # ... never the decoy's own
    plain, _ = edited_set(n_edit=6, n_base=10, share=1.0, steps=1)
    assert plain.region is None
    unfilled = next(iter(plain.loader(6, seed=0, epoch=0)))
    assert set(unfilled["x"].masked_select(unfilled["edit_map"] == 0).tolist()) <= decoy_values


def test_finetune_refuses_edits_from_outside_the_models_domain(tiny_abn_dir, tmp_path, capsys):
    photos = tmp_path / "photos" / "bag"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(photos / "p.png")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((64, 80), 255, np.uint8)).save(masks / "p.png")
    edits = tmp_path / "edits"
    assert main(["edit", str(photos.parent), "--model", str(tiny_abn_dir), "--edits", str(edits),
                 "--from-masks", str(masks)]) == 0
    capsys.readouterr()
    rc = main(["finetune", "--model", str(tiny_abn_dir), "--edits", str(edits), "--data",
               "fashion-mnist", "--out", str(tmp_path / "ft")])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 1 and len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith("error: --edits:") and "p.png" in errors[0]
    assert "80x64 px" in errors[0] and "colour" in errors[0]
    assert not (tmp_path / "ft").exists()


def test_data_export_writes_an_image_folder_with_masks(tmp_path, capsys):
    out = tmp_path / "decoy" / "train"
    assert main(["data", "export", "decoy-fmnist", "--split", "train", "--limit", "30",
                 "--out", str(out)]) == 0
    data = decoy_fmnist("train", 0, limit=30)
    files = sorted(out.rglob("*.png"))
    assert len(files) == 30
    for f in files:
        i = int(f.stem.split("_")[1])
        assert np.array_equal(np.asarray(Image.open(f)), data.images[i])
        assert FMNIST_CLASSES[data.labels[i]].lower().startswith(f.parent.name.split("_")[0])
        mask = np.asarray(Image.open(out.parent / "train-masks" / f.parent.name / f.name)) > 127
        assert np.array_equal(mask, data.masks[i])
    assert main(["data", "export", "fashion-mnist", "--limit", "5", "--out", str(tmp_path / "f")]) == 0
    assert not (tmp_path / "f-masks").exists()  # no masks where the data set has none


HITL = [sys.executable, str(ROOT / "benchmarks" / "hitl.py"), "--train-limit", "200",
        "--test-limit", "60", "--epochs", "1", "--ft-epochs", "1", "--ft-steps", "2",
        "--seeds", "0", "--n", "20,500", "--methods", "paper,counterfactual", "--jobs", "1"]


def run_hitl(work: Path, out: Path) -> dict:
    done = subprocess.run(HITL + ["--work", str(work), "--out", str(out)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.with_suffix(".json").read_text())


def test_hitl_benchmark_end_to_end_resumes_after_a_kill(tmp_path):
    whole = run_hitl(tmp_path / "w1", tmp_path / "r1")
    assert {(r["method"], r["n"]) for r in whole["summary"]} == {
        ("decoy (no fix)", None), ("clean", None), *((m, n) for m in ("paper", "counterfactual")
                                                     for n in (20, 200))}  # N clamped to 200
    assert whole["reduced"] and Path(whole["plot"]).is_file()
    assert "REDUCED" in (tmp_path / "r1.md").read_text()
    # interrupted: killed once the decoy base has finished, then the same command again
    work = tmp_path / "w2"
    proc = subprocess.Popen(HITL + ["--work", str(work), "--out", str(tmp_path / "r2")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while not list(work.rglob("decoy/result.json")) and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "r2.json").exists()
    resumed = run_hitl(work, tmp_path / "r2")
    assert resumed["reused"] >= 1
    key = (lambda d: sorted((r["method"], r["n"], round(r["accuracy"], 6), round(r["wr"], 4))
                            for r in d["rows"]))
    assert key(resumed) == key(whole)  # the same table as the uninterrupted run
    again = run_hitl(work, tmp_path / "r3")  # a finished run is reused, not recomputed
    assert again["reused"] == again["runs"]


def test_hitl_cache_is_keyed_by_the_settings(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import hitl
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    s = hitl.Settings(3, 3, 100, 0.05, 0.9, 1.0, 1.0, 1.0, False, None, None, "auto", "cpu")
    base, ft = hitl.Task("base", 0, "decoy"), hitl.Task("finetune", 0, "paper", 1000)
    other_ft = s.__class__(**{**s.__dict__, "edited_share": 0.5})
    other_base = s.__class__(**{**s.__dict__, "epochs": 2})
    assert s.run_dir(tmp_path, base) == other_ft.run_dir(tmp_path, base)  # bases are shared
    assert s.run_dir(tmp_path, ft) != other_ft.run_dir(tmp_path, ft)
    assert s.run_dir(tmp_path, base) != other_base.run_dir(tmp_path, base)


def readme_commands(section: str) -> list[list[str]]:
    """The `explain ...` lines of the first bash block under README's `## section`."""
    text = (ROOT / "README.md").read_text()
    block = text.split(f"## {section}\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


def test_readme_fix_a_shortcut_commands_run_as_written(tmp_path, monkeypatch, capsys):
    """The README's commands, on a reduced size: fewer images, a few fine-tuning steps."""
    monkeypatch.chdir(tmp_path)
    reduced = {"1000": "12", "8": "3"}
    commands = readme_commands("Fix a shortcut")
    assert [c[1] for c in commands] == ["data", "edit", "finetune", "data", "decoy/test"]
    for cmd in commands:
        assert cmd[0] == "explain"
        args = [reduced.get(a, a) if prev == "--limit" else a for prev, a in zip([""] + cmd, cmd)][1:]
        if args[0] == "finetune":
            args += ["--epochs", "1", "--steps", "2", "--unedited", "100", "--held-out", "100"]
        assert main(args) == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "decoy" / "fixed" / "report.json").read_text())
    assert rep["edits_used"] == 12 and rep["after"]["test_images"] == 100
    assert len(list((tmp_path / "decoy" / "maps").glob("*_abn.png"))) == 3
