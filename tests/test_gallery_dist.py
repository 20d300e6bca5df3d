"""Scale-out: `torchrun --nproc-per-node 2` (gloo, CPU) shards the images by rank, each rank
journals its own shard, and rank 0 merges them into one page and manifest."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def test_two_ranks_share_the_work_and_merge_one_gallery(fmnist_pngs, tiny_abn_dir, tmp_path):
    out = tmp_path / "g"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "explain", "gallery", str(fmnist_pngs), "--model", str(tiny_abn_dir),
           "--methods", "abn,gradcam", "--out", str(out), "--batch-size", "4", "--workers", "0",
           "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("gallery: 24 rows (24 written now") == 1  # rank 0 reports

    shards = sorted((out / ".gallery").glob("shard-*.jsonl"))
    assert [s.name for s in shards] == ["shard-000.jsonl", "shard-001.jsonl"]
    per_rank = [[json.loads(line) for line in s.read_text().splitlines()] for s in shards]
    assert [len(rows) for rows in per_rank] == [12, 12]
    assert {r["rank"] for r in per_rank[1]} == {1}
    assert not {r["id"] for r in per_rank[0]} & {r["id"] for r in per_rank[1]}

    rows = json.loads((out / "manifest.json").read_text())["rows"]
    assert [r["index"] for r in rows] == list(range(24))
    assert all((out / f).exists() for r in rows for f in r["files"].values())
    page = (out / "index.html").read_text()
    assert all(r["files"]["gradcam"] in page for r in rows)
    assert (out / "contact-sheet.png").exists()
