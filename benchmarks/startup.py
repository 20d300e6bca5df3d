"""Start-up time of the command line: `explain --help`, `explain models`, argument errors
and a mistyped command, next to `python -c 'import torch'` and a bare interpreter, each a
fresh process, interleaved round-robin in one run (median wall time). Goal (issue 15):
each `explain` row <= 1.0 s on this machine; building the parser imports no torch.

    python benchmarks/startup.py [--reps 7]

Runs `python -m explain` from this checkout (the console script runs the same entry).
Writes benchmarks/results/startup.json and startup.md, with the load average of the run:
the machine is shared, and a busy one slows every row alike.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from record import ROOT, under_load, write  # benchmarks/record.py

GOAL_S = 1.0
PY = [sys.executable]
CASES = {  # label -> (argv, whether it is an `explain` command the goal covers)
    "python -c pass": (PY + ["-c", "pass"], False),
    "python -c 'import torch'": (PY + ["-c", "import torch"], False),
    "explain --help": (PY + ["-m", "explain", "--help"], True),
    "explain models": (PY + ["-m", "explain", "models"], True),
    "explain models --json": (PY + ["-m", "explain", "models", "--json"], True),
    "explain photo.jpg --topk 0 (argument error)":
        (PY + ["-m", "explain", "photo.jpg", "--topk", "0"], True),
    "explain photo.jpg --topk3 (did you mean)": (PY + ["-m", "explain", "photo.jpg", "--topk3"], True),
    "explain modles (did you mean)": (PY + ["-m", "explain", "modles"], True),
    # Its --methods help lists the method registry, which imports torch: not a goal row.
    "explain image --help": (PY + ["-m", "explain", "image", "--help"], False),
}


def once(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=600, check=False)
    return time.perf_counter() - t0


def measure(reps: int) -> list[dict]:
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for label, (argv, _) in CASES.items():  # warm the file cache
        once(argv)
    for _ in range(reps):
        for label, (argv, _) in CASES.items():
            times[label].append(once(argv))
    torch_s = statistics.median(times["python -c 'import torch'"])
    return [{"command": label, "median_s": round(statistics.median(t), 3),
             "max_s": round(max(t), 3), "x_import_torch": round(statistics.median(t) / torch_s, 3),
             "goal": (f"<= {GOAL_S} s: " + ("met" if statistics.median(t) <= GOAL_S else "MISSED"))
             if CASES[label][1] else ""}
            for label, t in times.items()]


def to_markdown(rows: list[dict]) -> str:
    lines = ["| command | median s | max s | x `import torch` | goal |", "|---|---:|---:|---:|---|"]
    lines += [f"| `{r['command']}` | {r['median_s']:.3f} | {r['max_s']:.3f} | "
              f"{r['x_import_torch']:.2f} | {r['goal']} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    rows, load = under_load(lambda: measure(args.reps))
    env = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "reps": args.reps,
           "load_average_1_5_15": load}
    md = write("startup", env, rows, f"Python {env['python']}, {env['cpus']} CPUs; median of "
               f"{args.reps} fresh processes per row, interleaved", to_markdown(rows))
    print(md)


if __name__ == "__main__":
    main()
