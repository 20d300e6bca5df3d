"""Generates benchmarks/RESULTS.md, the project's results report; never edit that file by hand.

Sections:
- explanation metrics (BENCHMARKS.md, "Explanation metrics") for every zoo model trained on
  Cluttered-FashionMNIST (card "data": cluttered-fmnist) and every method it supports, on
  the first --limit images of the Cluttered-FashionMNIST test split; per-model JSON, CSV and
  plots under benchmarks/results/eval/MODEL/. Zoo models trained on other data are listed
  and not evaluated: the localisation set's 64 px canvases with clutter are not their input,
  so their scores would measure the distribution shift, not the explanations.
- the speed table (BENCHMARKS.md, "Speed"), measured in this run by benchmarks/speed.py;
- the human-in-the-loop table from benchmarks/results/hitl.json (written by
  benchmarks/hitl.py), when that file exists.

    python benchmarks/results.py                      # 500 images, every method
    python benchmarks/results.py --limit 100 --speed quick --methods abn,gradcam
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path[:0] = [str(ROOT), str(BENCH)]

from cli.eval_cmd import resolve_methods  # noqa: E402
from explain.atomic import atomic_write_text  # noqa: E402
from explain.datasets import cluttered_fmnist  # noqa: E402
from explain.metrics import Report, array_source, evaluate  # noqa: E402
from explain.metrics.report import (SANITY_LIMIT, markdown_table, sanity_failures,  # noqa: E402
                                    summary, table_rows, write_outputs)
from explain.registry import create_model, registry  # noqa: E402

DATA = "cluttered-fmnist"
RESULTS = BENCH / "results"


def zoo_models() -> tuple[list[str], list[str]]:
    """(zoo models trained on the cluttered set, lines for the others saying why not)."""
    chosen, others = [], []
    for name, entry in registry().items():
        data = entry.card.get("data")
        if data == DATA:
            chosen.append(name)
        else:
            others.append(f"`{name}` ({'trained on ' + data if data else 'no data set on its registry card'})")
    return chosen, others


def goal_lines(report: Report) -> list[str]:
    """The issue's goals for one model: ABN's native map against Grad-CAM on the same model
    (pointing game, insertion AUC), and which methods fail the sanity check."""
    out = []
    m = report.metrics
    if "abn" in m and "gradcam" in m:
        for key, label in (("pointing_game", "pointing game"), ("insertion_auc", "insertion AUC")):
            a, g = m["abn"].get(key), m["gradcam"].get(key)
            if a and g and a.mean is not None and g.mean is not None:
                verdict = "met" if a.mean >= g.mean else "not met"
                out.append(f"- {report.model}: ABN map >= Grad-CAM in {label}: **{verdict}** "
                           f"(ABN {a.text()} vs Grad-CAM {g.text()})")
    fails = sanity_failures(report)
    if any("sanity_spearman" in d for d in m.values()):
        out.append(f"- {report.model}: |Spearman| at full randomisation < {SANITY_LIMIT}: "
                   + (f"**fails for {', '.join(fails)}**" if fails else "**every method passes**"))
    return out


def metrics_section(args: argparse.Namespace) -> str:
    names, others = (args.models.split(","), []) if args.models else zoo_models()
    lines = ["## Explanation metrics on Cluttered-FashionMNIST", "",
             f"Protocols: shared BENCHMARKS.md. First {args.limit} test images (64x64, seed 0); "
             f"deletion/insertion in {args.steps} steps; pointing game within 4 px of the box "
             "(per-class mean); sanity check (cascading randomisation, top first) on "
             f"{args.sanity_images} images. Cells: mean [95% bootstrap interval]; arrows say "
             "which direction is better.", ""]
    if not names:
        lines += ["No zoo model is trained on cluttered-fmnist yet (`explain train --data "
                  "cluttered-fmnist --out explain/zoo/NAME_cluttered`); nothing to evaluate.", ""]
    data = cluttered_fmnist("test") if names else None
    goals: list[str] = []
    for name in names:
        model = create_model(name)
        supported = resolve_methods("all", model.native)  # each model: what it supports
        methods = [m for m in supported if args.methods == "all" or m in args.methods.split(",")]
        report = evaluate(model, array_source(data, model.input, args.batch_size, "box", args.limit),
                          methods, steps=args.steps, sanity_images=args.sanity_images,
                          precision=args.precision)
        files = write_outputs(report, Path(args.eval_dir) / model.name)
        acc = model.card.get("metrics", {}).get("test_accuracy")
        lines += [f"### {model.name}", "",
                  f"{model.card.get('arch', '?')}, trained on {model.card.get('data', '?')}"
                  + (f", test accuracy {acc:.2%}" if acc is not None else "") + ".", "",
                  "```", summary(report), "```", "", markdown_table(*table_rows(report)), ""]
        lines += [f"![{model.name}: {k}]({Path(os.path.relpath(f, Path(args.out).parent)).as_posix()})"
                  for k, f in files.items() if f.suffix == ".png"] + [""]
        goals += goal_lines(report)
    if goals:
        lines += ["### Goals (issue 7)", ""] + goals + [""]
    if others:
        lines += ["Not evaluated (not trained on the cluttered set): " + ", ".join(others) + ".", ""]
    return "\n".join(lines)


def speed_section(mode: str, reps: int) -> str:
    if mode == "skip":
        return "## Speed\n\nNot measured in this run (`--speed skip`).\n"
    import speed
    rows = speed.measure(reps, quick=mode == "quick")
    return ("## Speed (BENCHMARKS.md, \"Speed\")\n\n"
            f"Measured in this run by benchmarks/speed.py ({'quick' if mode == 'quick' else 'full'}"
            f" set, median of {reps} after warm-up, {torch.get_num_threads()} CPU threads): "
            "time per batch as a multiple of a plain no-grad forward pass in the same run.\n\n"
            + speed.to_markdown(rows) + "\n")


def hitl_section() -> str:
    path = RESULTS / "hitl.json"
    if not path.is_file():
        return ("## Human-in-the-loop benchmark\n\nNot run yet: `python benchmarks/hitl.py` "
                "writes benchmarks/results/hitl.json.\n")
    import hitl
    md = hitl.markdown(json.loads(path.read_text()))
    return "\n".join("#" + line if line.startswith("#") else line for line in md.splitlines()) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=500, help="Cluttered-FashionMNIST test images")
    p.add_argument("--methods", default="all",
                   help="comma-separated (each model gets those it supports), or all")
    p.add_argument("--models", help="comma-separated models instead of the zoo's cluttered ones")
    p.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    p.add_argument("--sanity-images", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="of the perturbed forward passes")
    p.add_argument("--speed", choices=["full", "quick", "skip"], default="full")
    p.add_argument("--speed-reps", type=int, default=15)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    p.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    p.add_argument("--eval-dir", default=str(RESULTS / "eval"),
                   help="per-model metrics.json/csv and plots go to EVAL_DIR/MODEL/")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python " + shlex.join(["benchmarks/results.py"] + (sys.argv[1:] if argv is None else argv))
    body = [metrics_section(args), speed_section(args.speed, args.speed_reps), hitl_section()]
    head = ["# Results", "",
            f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M')} (torch "
            f"{torch.__version__}, {platform.machine()} CPU, {torch.get_num_threads()} thread(s)). "
            "Do not edit by hand: rerun the command.", ""]
    atomic_write_text(args.out, "\n".join(head + body))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
