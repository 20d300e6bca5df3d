"""Training cost of each architecture's small-input default (28 px, as `explain train` builds
it for Fashion-MNIST): parameters and the time of one training step (forward + backward of
the architecture's own loss) as a multiple of ABN-ResNet-20's, measured side by side in one
process (steps interleaved round-robin, median after warm-up).

    python benchmarks/train_cost.py [--reps 5] [--batch 64] [--threads N]

Writes benchmarks/results/train_cost.json and train_cost.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speed import time_round_robin  # noqa: E402  (benchmarks/speed.py)

from explain.atomic import atomic_write_text  # noqa: E402
from explain.losses import LOSSES  # noqa: E402
from explain.models import ARCHS, build  # noqa: E402

BASELINE = "abn_resnet"
ARCHS_MEASURED = ["resnet", "abn_resnet", "ran", "ran92", "cbam_resnet", "se_resnet",
                  "attend_rectify", "bayes_abn_resnet"]
RESULTS = ROOT / "benchmarks" / "results"


def measure(reps: int, batch: int) -> list[dict]:
    torch.manual_seed(0)
    x, y = torch.randn(batch, 1, 28, 28), torch.arange(batch) % 10
    nets = {a: build(a, ARCHS[a].kwargs(10, 1, 28)).train() for a in ARCHS_MEASURED}

    def step(arch: str) -> None:
        loss, _, _ = LOSSES[ARCHS[arch].loss](nets[arch], x, y, {})
        loss.backward()

    med = time_round_robin({a: lambda a=a: step(a) for a in nets}, reps)
    return [{"arch": a, "params": sum(p.numel() for p in nets[a].parameters()),
             "ms": round(med[a] * 1e3, 1), "ratio": round(med[a] / med[BASELINE], 3)}
            for a in nets]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure(args.reps, args.batch)
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "train_cost.json", json.dumps(
        {"torch": torch.__version__, "threads": args.threads, "batch": args.batch,
         "reps": args.reps, "rows": rows}, indent=2) + "\n")
    lines = [f"Written by `python benchmarks/train_cost.py {' '.join(sys.argv[1:])}`".rstrip() +
             f" (torch {torch.__version__}, {args.threads} CPU threads, batch {args.batch} of "
             f"28x28, median of {args.reps} steps).", "",
             f"| arch (28 px default) | parameters | ms / step | x {BASELINE} |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['arch']} | {r['params'] / 1e6:.3f}M | {r['ms']} | {r['ratio']:.2f} |"
              for r in rows]
    atomic_write_text(RESULTS / "train_cost.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
