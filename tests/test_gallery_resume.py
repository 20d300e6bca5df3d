"""A gallery run killed halfway (SIGKILL: no chance to clean up) leaves a valid page of what
it finished, and `--resume` completes it without redoing the finished rows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from explain.registry import Model, from_checkpoint

ENV_CKPT = "GALLERY_TEST_CHECKPOINT"


def slow_tiny_abn() -> Model:
    """The tiny ABN fixture, slowed to ~0.1 s a forward pass so a run can be killed halfway
    (a `package.module:function` model factory, imported by the CLI subprocess)."""
    model = from_checkpoint(os.environ[ENV_CKPT])
    model.net.register_forward_pre_hook(lambda module, args: time.sleep(0.1))
    return model


def gallery_cmd(folder: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "explain", "gallery", str(folder), "--model",
            "test_gallery_resume:slow_tiny_abn", "--methods", "abn,gradcam", "--out", str(out),
            "--batch-size", "2", "--workers", "0", "--no-progress", *extra]


def journal_rows(out: Path) -> list[dict]:
    rows = []
    for shard in (out / ".gallery").glob("shard-*.jsonl"):
        for line in shard.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


def embedded_rows(out: Path) -> list[dict]:
    html = (out / "index.html").read_text()
    start = html.index('<script type="application/json" id="gallery-data">') + 50
    return json.loads(html[start:html.index("</script>", start)])["rows"]


def test_killed_run_leaves_valid_gallery_and_resume_completes_it(fmnist_pngs, tiny_abn_dir,
                                                                 tmp_path):
    out = tmp_path / "g"
    env = {**os.environ, ENV_CKPT: str(tiny_abn_dir),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(gallery_cmd(fmnist_pngs, out), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((out / "index.html").exists() and len(journal_rows(out)) >= 8):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    finished = {r["id"]: r for r in journal_rows(out)}
    assert 8 <= len(finished) < 24, "killed too late to test a resume"
    shown = embedded_rows(out)  # the page written while the run went is valid and true
    assert 0 < len(shown) <= len(finished)
    for row in shown:
        assert row["id"] in finished
        assert all((out / f).stat().st_size > 0 for f in row["files"].values())
    before = {(i, k): (out / f).stat().st_ino
              for i, r in finished.items() for k, f in r["files"].items()}

    done = subprocess.run(gallery_cmd(fmnist_pngs, out, "--resume"), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(finished)} already done" in done.stdout
    rows = embedded_rows(out)
    assert len(rows) == 24 and not any(r["error"] for r in rows)
    after = {(r["id"], k): (out / f).stat().st_ino
             for r in rows if r["id"] in finished for k, f in r["files"].items()}
    assert after == before  # finished rows were not redone
    assert len(journal_rows(out)) == 24  # each row journaled once
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["id"] for r in manifest["rows"]] == [r["id"] for r in rows]
