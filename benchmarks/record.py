"""How the benchmarks that run on a shared machine record a run: the load average next to
the figures (a busy machine slows every row alike, but the reader must know it was busy),
and results/<stem>.json + .md naming the exact command."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, TypeVar

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
T = TypeVar("T")


def under_load(run: Callable[[], T]) -> tuple[T, list[float]]:
    """`run()`'s result and the load average (1/5/15 min) of the run: the higher of before
    and after."""
    before = os.getloadavg()
    result = run()
    return result, [round(max(a, b), 2) for a, b in zip(before, os.getloadavg())]


def write(stem: str, env: dict, rows: list[dict], conditions: str, table: str) -> str:
    """Write results/<stem>.json and <stem>.md ("Written by `python benchmarks/<stem>.py
    ARGS` (conditions, load average ...)." and the table); returns the markdown."""
    sys.path.insert(0, str(ROOT))
    from explain.atomic import atomic_write_text
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / f"{stem}.json", json.dumps({"env": env, "rows": rows}, indent=2))
    command = " ".join(["python", f"benchmarks/{stem}.py", *sys.argv[1:]])
    load = " / ".join(map(str, env["load_average_1_5_15"]))
    md = (f"Written by `{command}` ({conditions}; load average {load} (1/5/15 min, the "
          f"higher of before and after)).\n\n{table}\n")
    atomic_write_text(RESULTS / f"{stem}.md", md)
    return md
