"""Rows of a gallery: the append-only shard journals they are recorded in while a run goes,
and the merged manifest (JSON and CSV) other tools read.

Each process appends JSON lines to its own shard `.gallery/shard-RANK.jsonl` only after the
row's files are in place, so the journals always describe finished work: the page, the
manifest and `--resume` are all rebuilt from them. A line torn by a kill is skipped.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Iterable

from explain.atomic import atomic_write_text, naming

STATE = ".gallery"
PNG_END = b"IEND\xaeB`\x82"  # the last 8 bytes of every complete PNG


def shard_path(out: Path, rank: int) -> Path:
    return out / STATE / f"shard-{rank:03d}.jsonl"


class Journal:
    """One process's shard, opened for appending; each `append` is flushed and fsynced."""

    def __init__(self, out: Path, rank: int):
        self.path = shard_path(out, rank)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "ab")
        if self.file.tell() and not _ends_with_newline(self.path):
            self.file.write(b"\n")  # isolate a line torn by an earlier kill

    def append(self, rows: Iterable[dict]) -> None:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        if data:
            with naming(self.path):  # a full disk: say which file
                self.file.write(data)
                self.file.flush()
                os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def read_rows(out: Path) -> list[dict]:
    """Every shard's rows merged, the latest record of each id kept, in input order."""
    rows: dict[str, dict] = {}
    for shard in sorted((out / STATE).glob("shard-*.jsonl")):
        with open(shard, "rb") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and "id" in row:
                    prev = rows.get(row["id"])
                    if prev is None or row.get("time", 0) >= prev.get("time", 0):
                        rows[row["id"]] = row
    return sorted(rows.values(), key=lambda r: (r.get("index", 0), r["id"]))


def complete_png(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(-len(PNG_END), os.SEEK_END)
            return f.read() == PNG_END
    except OSError:
        return False


def finished_ids(out: Path, rows: list[dict]) -> set[str]:
    """Rows `--resume` may skip: no error, every file present and complete. Rows that
    failed are tried again (the file may have been fixed since)."""
    return {r["id"] for r in rows if not r.get("error") and r.get("files")
            and all(complete_png(out / f) for f in {*r["files"].values(), *r["thumbs"].values()})}


CSV_FIELDS = ["index", "id", "name", "path", "truth", "pred", "label", "prob", "correct",
              "error"]


def _manifest_json(settings: dict, rows: list[dict]) -> str:
    """A setting a line, then a row a line: readable, and every line is made by json's C
    encoder (`indent=` switches json to its Python one: 65 ms for 2,000 rows, against 34)."""
    head = "".join(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},\n"
                   for k, v in settings.items())
    body = ",\n".join(f"  {json.dumps(r, ensure_ascii=False)}" for r in rows)
    return f'{{\n{head} "rows": [\n{body}\n ]\n}}\n'


def write_manifest(out: Path, settings: dict, rows: list[dict]) -> None:
    """manifest.json (settings + rows) and manifest.csv (a line a row, a column a method)."""
    atomic_write_text(out / "manifest.json", _manifest_json(settings, rows))
    methods = settings["methods"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_FIELDS + ["outside_domain", "input"] + methods)
    for r in rows:
        files = r.get("files", {})
        w.writerow([r.get(k, "") if r.get(k) is not None else "" for k in CSV_FIELDS]
                   + ["; ".join(r.get("outside") or [])]
                   + [files.get("input", "")] + [files.get(m, "") for m in methods])
    atomic_write_text(out / "manifest.csv", buf.getvalue())
