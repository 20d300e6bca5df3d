"""Generates benchmarks/RESULTS.md, the project's results report; never edit that file by hand.

Sections:
- explanation metrics (BENCHMARKS.md, "Explanation metrics") for every zoo model and every
  method it supports, on the first --limit test images of the set it was trained on:
  Cluttered-FashionMNIST (with the pointing games against the object boxes) or
  Fashion-MNIST (no boxes: faithfulness and sanity only). Each model is scored on its own
  input distribution; the cluttered 64 px canvases would measure a 28 px model's
  distribution shift, not its explanations. Per-model JSON, CSV and plots go under
  benchmarks/results/eval/MODEL/.
- the speed table (BENCHMARKS.md, "Speed"), measured in this run by benchmarks/speed.py;
- the native maps' speed from benchmarks/results/native_speed.json (benchmarks/native_speed.py);
- the ImageNet ABN on photos from benchmarks/results/photo_abn.md (benchmarks/photo_abn.py);
- the human-in-the-loop table from benchmarks/results/hitl.json (written by
  benchmarks/hitl.py), when that file exists.

    python benchmarks/results.py                      # 500 images, every method
    python benchmarks/results.py --limit 100 --speed quick --methods abn,gradcam
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path[:0] = [str(ROOT), str(BENCH)]

from explain.atomic import atomic_write_text  # noqa: E402
from explain.datasets import load_named  # noqa: E402
from explain.metrics import Report, array_source, evaluate  # noqa: E402
from explain.metrics.report import (SANITY_LIMIT, markdown_table, sanity_failures,  # noqa: E402
                                    summary, table_rows, write_outputs)
from explain.methods import select  # noqa: E402
from explain.registry import create_model, registry  # noqa: E402

RESULTS = BENCH / "results"
REUSED = "read back from an earlier run of this script with the same settings (--reuse)"


@dataclass(frozen=True)
class EvalSet:
    """A data set the zoo models are scored on, and what its ground truth allows."""
    data: str
    title: str
    about: str  # what is measured, for the section's first paragraph


EVAL_SETS = [
    EvalSet("cluttered-fmnist", "Explanation metrics on Cluttered-FashionMNIST",
            "64x64 canvases with clutter, seed 0; pointing games against the object's box "
            "(within 4 px, per-class mean)"),
    EvalSet("fashion-mnist", "Faithfulness on Fashion-MNIST (every architecture of the zoo)",
            "28x28, the models' own test set; no object boxes (the garment fills the image), "
            "so no pointing games: deletion/insertion, average drop/increase and the sanity "
            "check compare each native map with the CAM family on the same model"),
    EvalSet("decoy-fmnist", "The wrong reason on Decoy-FashionMNIST (a shortcut, then fixed)",
            "28x28 with a grey corner square whose shade gave the label away in training and is "
            "random at test; WR = share of the square's pixels a map marks, lower is better: "
            "the decoy-trained ABN before and after `explain finetune` on 1,000 edited maps"),
]


def zoo_models() -> tuple[dict[str, list[str]], list[str]]:
    """({data set: zoo models trained on it}, lines for the others saying why not)."""
    chosen: dict[str, list[str]] = {s.data: [] for s in EVAL_SETS}
    others = []
    for name, entry in registry().items():
        data = entry.card.get("data")
        if data in chosen:
            chosen[data].append(name)
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


def model_section(name: str, data_name: str, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """One model's table, plots and files (every method it supports, or --methods'), and its
    goal lines; runs in a worker process under --jobs."""
    torch.set_num_threads(args.threads)
    model = create_model(name)
    report = earlier_report(Path(args.eval_dir) / model.name, data_name, args) if args.reuse else None
    if report is None:
        supported = select(model, "all")
        methods = [m for m in supported if args.methods == "all" or m in args.methods.split(",")]
        data = load_named(data_name, "test", limit=args.limit)
        report = evaluate(model, array_source(data, model.input, args.batch_size, "box"),
                          methods, steps=args.steps, sanity_images=args.sanity_images,
                          precision=args.precision, progress=args.jobs == 1)
    elif REUSED not in report.notes:
        report.notes.append(REUSED)
    files = write_outputs(report, Path(args.eval_dir) / model.name)
    acc = model.card.get("metrics", {}).get("test_accuracy")
    lines = [f"### {model.name}", "",
             f"{model.card.get('arch', '?')}, trained on {model.card.get('data', '?')}"
             + (f", test accuracy {acc:.2%}" if acc is not None else "") + ".", "",
             "```", summary(report), "```", "", markdown_table(*table_rows(report)), ""]
    lines += [f"![{model.name}: {k}]({Path(os.path.relpath(f, Path(args.out).parent)).as_posix()})"
              for k, f in files.items() if f.suffix == ".png"] + [""]
    print(f"{'read back' if REUSED in report.notes else 'evaluated'} {name} on {data_name}",
          file=sys.stderr, flush=True)
    return lines, goal_lines(report) if data_name == "cluttered-fmnist" else []


def earlier_report(folder: Path, data_name: str, args: argparse.Namespace) -> Report | None:
    """The report an earlier run wrote to `folder`, when it was made on the same data with
    the same image count, steps, sanity images and precision (its methods as they were)."""
    try:
        report = Report.from_dict(json.loads((folder / "metrics.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    same = (report.data == data_name and report.images == args.limit
            and report.settings.get("steps") == args.steps
            and report.settings.get("sanity_images") == args.sanity_images
            and report.settings.get("precision") == args.precision)
    return report if same else None


def metrics_sections(args: argparse.Namespace) -> str:
    if args.models:
        wanted = args.models.split(",")
        chosen = {s.data: [n for n in wanted if registry()[n].card.get("data") == s.data]
                  for s in EVAL_SETS}
        others = []
    else:
        chosen, others = zoo_models()
    work = [(name, es.data) for es in EVAL_SETS for name in chosen.get(es.data, [])]
    if args.jobs > 1 and len(work) > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(model_section, *zip(*work), [args] * len(work)))
    else:
        done = [model_section(name, data, args) for name, data in work]
    sections = dict(zip(work, done))
    lines, goals = [], []
    for es in EVAL_SETS:
        lines += [f"## {es.title}", "",
                  f"Protocols: shared BENCHMARKS.md. First {args.limit} test images ({es.about}); "
                  f"deletion/insertion in {args.steps} steps; sanity check (cascading "
                  f"randomisation, top first) on {args.sanity_images} images. Cells: mean [95% "
                  "bootstrap interval]; arrows say which direction is better.", ""]
        names = chosen.get(es.data, [])
        if not names:
            lines += [f"No {'chosen' if args.models else 'zoo'} model is trained on {es.data}; "
                      "nothing to evaluate.", ""]
        for name in names:
            section, model_goals = sections[name, es.data]
            lines += section
            goals += model_goals
    if goals:
        lines += ["## Goals (issue 7)", ""] + goals + [""]
    if others:
        lines += ["Not evaluated (trained on neither set): " + ", ".join(others) + ".", ""]
    return "\n".join(lines)


def speed_section(mode: str, reps: int) -> str:
    if mode == "skip":
        return "## Speed\n\nNot measured in this run (`--speed skip`).\n"
    import speed
    malloc = speed.malloc_settings()  # as the command line and benchmarks/speed.py run
    rows = speed.measure(reps, quick=mode == "quick")
    return ("## Speed (BENCHMARKS.md, \"Speed\")\n\n"
            f"Measured in this run by benchmarks/speed.py ({'quick' if mode == 'quick' else 'full'}"
            f" set, median of {reps} after warm-up, {torch.get_num_threads()} CPU threads, "
            f"{malloc}): "
            "time per batch as a multiple of a plain no-grad forward pass in the same run.\n\n"
            + speed.to_markdown(rows) + "\n")


NATIVE_GOALS = {"raw attention (default layer)": 1.05, "rollout": 1.05,
                "gradient-weighted attention": 1.3}  # issue 16: x forward


def native_speed_section() -> str:
    """The self-attention family's native maps as a multiple of the forward pass, from
    benchmarks/results/native_speed.{json,md} (written by benchmarks/native_speed.py: its
    ViT-B/16 case alone takes longer than this whole report's speed table)."""
    path = RESULTS / "native_speed.json"
    if not path.is_file():
        return ("## Native map speed\n\nNot run yet: `python benchmarks/native_speed.py` "
                "writes benchmarks/results/native_speed.json.\n")
    rows = json.loads(path.read_text())["rows"]
    floors = {r["model"]: r["ratio"] for r in rows if r["method"].startswith("(floor)")}

    def floor(r: dict) -> str:  # what no exact gradient at every attention layer beats
        f = floors.get(r["model"]) if r["method"] == "gradient-weighted attention" else None
        return "" if f is None else f"; the backward floor on this model: {f:.3f}x"
    goals = [f"- {r['model']}, {r['method']}: {r['ratio']:.3f}x forward (goal <= {NATIVE_GOALS[r['method']]}x): "
             f"**{'met' if r['ratio'] <= NATIVE_GOALS[r['method']] else 'not met'}**{floor(r)}"
             for r in rows if r["method"] in NATIVE_GOALS]
    return "\n".join(["## Native map speed (benchmarks/native_speed.py)", "",
                      (RESULTS / "native_speed.md").read_text().strip(), "",
                      "Goals for the self-attention family (issue 16):", ""] + goals) + "\n"


def photo_abn_section() -> str:
    """The ImageNet ABN on held-out photos, from benchmarks/results/photo_abn.md (written by
    benchmarks/photo_abn.py): it has no test set of the kind the tables above use."""
    path = RESULTS / "photo_abn.md"
    body = (path.read_text().strip() if path.is_file() else
            "Not run yet: `python benchmarks/photo_abn.py` writes benchmarks/results/photo_abn.md.")
    return "## The ImageNet ABN on photos (benchmarks/photo_abn.py)\n\n" + body + "\n"


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
    p.add_argument("--limit", type=int, default=500, help="test images of each data set")
    p.add_argument("--methods", default="all",
                   help="comma-separated (each model gets those it supports), or all")
    p.add_argument("--models", help="comma-separated zoo models instead of all of them")
    p.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    p.add_argument("--sanity-images", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="of the perturbed forward passes")
    p.add_argument("--speed", choices=["full", "quick", "skip"], default="full")
    p.add_argument("--speed-reps", type=int, default=15)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="CPU threads (of each worker under --jobs)")
    p.add_argument("--jobs", type=int, default=1,
                   help="models evaluated side by side in worker processes (the speed table "
                        "is measured afterwards, alone)")
    p.add_argument("--reuse", action="store_true",
                   help="read back a model's metrics.json from EVAL_DIR when an earlier run "
                        "wrote it with the same settings (its methods as they were then) "
                        "instead of measuring it again; the report says which")
    p.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    p.add_argument("--eval-dir", default=str(RESULTS / "eval"),
                   help="per-model metrics.json/csv and plots go to EVAL_DIR/MODEL/")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python " + shlex.join(["benchmarks/results.py"] + (sys.argv[1:] if argv is None else argv))
    body = [metrics_sections(args), speed_section(args.speed, args.speed_reps),
            native_speed_section(), photo_abn_section(), hitl_section()]
    head = ["# Results", "",
            f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M')} (torch "
            f"{torch.__version__}, {platform.machine()} CPU, {torch.get_num_threads()} thread(s)). "
            "Do not edit by hand: rerun the command.", ""]
    atomic_write_text(args.out, "\n".join(head + body))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
