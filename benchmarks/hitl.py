"""Human-in-the-loop benchmark (BENCHMARKS.md): Decoy-FashionMNIST, edit -> fine-tune.

Per seed: an ABN trained on the decoy training set (it learns the shortcut: the check is
accuracy on random-decoy test images below `--shortcut-below`) and, as the upper reference, the
same ABN on clean data. For each N, a person's edits on N training images are simulated by
removing the decoy from the ABN map, M' = M (1 - E), and the decoy-trained ABN is fine-tuned
from them by each method; RRR and HINT get the same N annotations (the mask E). Every method
runs the same bounded schedule: `--ft-epochs` x `--ft-steps` batches, `--edited-share` of each
batch drawn from the N annotated images and the rest from the unannotated ones. The checkpoint
is always the last step's (the test set never chooses anything).

Runs are tasks in a pool of one-thread processes (`--jobs`); each finished run is kept under
`--work` (default ~/.cache/explain/hitl), keyed by the settings that matter, so a rerun of the
same command skips what is done and an interrupted training resumes. The script writes
benchmarks/results/hitl.{md,json,png} (hitl-reduced.* for a reduced configuration).

    python benchmarks/hitl.py                                  # the full protocol
    python benchmarks/hitl.py --device cuda                    # the same on a GPU
    python benchmarks/hitl.py --train-limit 2000 --test-limit 500 --epochs 1 --ft-steps 5 \\
        --seeds 0 --n 100                                      # a smoke run
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402
from explain.checkpoint import load_checkpoint  # noqa: E402
from explain.datasets import ArrayData, decoy_fmnist, fashion_mnist  # noqa: E402
from explain.explanation import upsample  # noqa: E402
from explain.finetune import PAPER, EditedSamples, EditedSet, FinetuneConfig, finetune  # noqa: E402
from explain.losses import LossOut  # noqa: E402
from explain.metrics.localisation import wrong_reason  # noqa: E402
from explain.train import TrainConfig, train  # noqa: E402
from explain.trainsets import ArraySet  # noqa: E402

PROTOCOL = 2  # bump when a change alters what a cached run means
FULL = {"epochs": 3, "ft_epochs": FinetuneConfig.epochs, "ft_steps": FinetuneConfig.steps, "train_limit": None, "test_limit": None,
        "seeds": "0,1,2", "n": "100,1000,all"}
# name -> (loss, FinetuneConfig overrides). `paper` is Mitsuhara et al. as published.
CF = {"perception": "residual", "freeze_features": False, "counterfactual": "mix"}
METHODS = {
    "paper": ("map", PAPER),
    "paper-unfrozen": ("map", {**PAPER, "freeze_features": False}),
    "mask": ("map", {**PAPER, "perception": "mask"}),
    "mask-unfrozen": ("map", {**PAPER, "perception": "mask", "freeze_features": False}),
    "counterfactual": ("map", CF),  # explain finetune's default
    "counterfactual-nomap": ("map", {**CF, "gamma": 0.0}),
    "counterfactual-frozen": ("map", {**CF, "freeze_features": True}),
    "counterfactual-donor": ("map", {**CF, "counterfactual": "donor"}),
    "rrr": ("rrr", {"freeze_features": False, "counterfactual": None}),
    "hint": ("hint", {"freeze_features": False, "counterfactual": None}),
}

DEFAULT_METHODS = [m for m in METHODS if m not in ("counterfactual-frozen", "counterfactual-donor")]


def rrr_loss(model, x: torch.Tensor, y: torch.Tensor, batch: dict, lam: float = 1.0) -> LossOut:
    """ABN loss + lam * ||E * d(sum_k log p_k)/dx||^2 on annotated samples (Ross et al.);
    `edit_map` carries the wrong-reason mask E here, so that augmentation moves it with x."""
    x = x.detach().requires_grad_(True)
    out = model(x, outputs="all")  # through forward, so that a DDP wrapper sees the call
    base = F.cross_entropy(out.att_logits, y) + F.cross_entropy(out.logits, y)
    grad = torch.autograd.grad(F.log_softmax(out.logits.float(), 1).sum(), x, create_graph=True)[0]
    w = batch["has_edit"].float()
    rr = ((batch["edit_map"] * grad) ** 2).flatten(1).sum(1)
    rr = (rr * w).sum() / w.sum().clamp(min=1)
    return base + lam * rr, out.logits, {"rrr": rr.item()}


def hint_loss(model, x: torch.Tensor, y: torch.Tensor, batch: dict, lam: float = 1.0) -> LossOut:
    """ABN loss + lam * MSE(normalised Grad-CAM of the true class at the perception
    branch's last stage, 1 - E) on annotated samples (HINT as in Friedrich et al.)."""
    net = model.module if hasattr(model, "module") else model
    acts: dict[str, torch.Tensor] = {}
    hook = net.stage(net.num_stages).register_forward_hook(lambda m, i, o: acts.update(a=o))
    try:
        out = model(x, outputs="all")
    finally:
        hook.remove()
    a = acts["a"]
    base = F.cross_entropy(out.att_logits, y) + F.cross_entropy(out.logits, y)
    g = torch.autograd.grad(out.logits.gather(1, y[:, None]).sum(), a, create_graph=True)[0]
    cam = (g.mean((2, 3), keepdim=True) * a).sum(1).flatten(1).float()
    lo, hi = cam.min(1, keepdim=True).values, cam.max(1, keepdim=True).values
    cam = (cam - lo) / (hi - lo + 1e-6)
    right = 1 - F.adaptive_avg_pool2d(batch["edit_map"].float(), a.shape[-2:]).flatten(1)
    w = batch["has_edit"].float()
    h = ((cam - right) ** 2).mean(1)
    h = (h * w).sum() / w.sum().clamp(min=1)
    return base + lam * h, out.logits, {"hint": h.item()}


@dataclass(frozen=True)
class Settings:
    """Everything that changes what a run computes; its digest names the cache folder."""
    epochs: int
    ft_epochs: int
    ft_steps: int
    ft_lr: float
    edited_share: float
    gamma: float
    rrr_lambda: float
    hint_lambda: float
    augment: bool
    train_limit: int | None
    test_limit: int | None
    precision: str
    device_type: str
    protocol: int = PROTOCOL

    def key(self, fields: tuple[str, ...] | None = None) -> str:
        d = {k: v for k, v in asdict(self).items() if fields is None or k in fields}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def run_dir(self, work: Path, task: "Task") -> Path:
        """Base runs depend on fewer settings than fine-tunes: they are shared by every
        fine-tuning configuration on the same base settings."""
        root = Path(work) / f"base-{self.key(BASE_FIELDS)}"
        if task.kind == "finetune":
            root = root / f"ft-{self.key()}"
        return root / f"seed{task.seed}" / task.folder


BASE_FIELDS = ("epochs", "augment", "train_limit", "test_limit", "precision", "device_type",
               "protocol")


@dataclass(frozen=True)
class Task:
    kind: str              # "base" or "finetune"
    seed: int
    name: str              # decoy / clean, or the method
    n: int | None = None   # annotated images (fine-tunes)

    @property
    def folder(self) -> str:
        return self.name if self.n is None else f"{self.name}-n{self.n}"


def code_digest() -> str:
    """A digest of the code a run executes (recorded, and compared when runs are reused)."""
    files = [Path(__file__)] + sorted((ROOT / "explain").rglob("*.py"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


@lru_cache(maxsize=None)
def data(seed: int, limit: int | None, test_limit: int | None) -> tuple[ArrayData, ArrayData, ArrayData]:
    """(decoy train, clean train, random-decoy test), seeded subsets when limited."""
    def subset(d: ArrayData, n: int | None) -> ArrayData:
        if n is None or n >= len(d):
            return d
        return d.subset(np.sort(np.random.default_rng(seed).permutation(len(d))[:n]))
    return (subset(decoy_fmnist("train", seed), limit), subset(fashion_mnist("train"), limit),
            subset(decoy_fmnist("test", seed), test_limit))


@torch.no_grad()
def abn_maps(net, x: torch.Tensor, device: torch.device, batch_size: int = 500) -> torch.Tensor:
    """M(x) at feature resolution, (N, 1, h, w) float32 on the CPU."""
    net.eval()
    return torch.cat([net.forward_all(x[s:s + batch_size].to(device)).att_map.float().cpu()
                      for s in range(0, len(x), batch_size)])


@torch.no_grad()
def scores(ckpt: Path, test: ArrayData, device: torch.device) -> dict:
    """Test accuracy, WR of the ABN map, and the accuracy when every test map is edited
    (M' = M (1 - E)) and the perception branch re-run with it, as the editor does."""
    net, _ = load_checkpoint(ckpt)
    net = net.to(device).eval()
    x, y = test.tensors()
    e = torch.from_numpy(test.masks[:, None].astype(np.float32))
    maps, preds, edited = [], [], []
    for s in range(0, len(x), 500):
        xb = x[s:s + 500].to(device)
        g = net.features(xb)
        _, m = net.attention(g)
        m_in = upsample(m.float(), tuple(x.shape[-2:]))
        preds.append(net.perceive(g, m).argmax(1).cpu())
        m_edit = F.interpolate(m_in * (1 - e[s:s + 500].to(device)), size=m.shape[-2:],
                               mode="bilinear", align_corners=False)
        edited.append(net.perceive(g, m_edit).argmax(1).cpu())
        maps.append(m_in.cpu())
    preds, edited, maps = torch.cat(preds), torch.cat(edited), torch.cat(maps)
    wr = wrong_reason(maps, torch.from_numpy(test.masks))  # Friedrich et al.'s WR, per image
    return {"accuracy": float((preds == y).float().mean()), "wr": float(torch.nanmean(wr)),
            "edited_accuracy": float((edited == y).float().mean())}


def fine_tune_set(task: Task, s: Settings, decoy: ArrayData, base_maps: torch.Tensor) -> EditedSet:
    """The N annotated images (the first N of a seeded order) and the unannotated rest."""
    order = np.random.default_rng(task.seed).permutation(len(decoy))
    picked, rest = np.sort(order[:task.n]), np.sort(order[task.n:])
    loss, overrides = METHODS[task.name]
    x, y = decoy.subset(picked).tensors()
    e = torch.from_numpy(decoy.masks[picked][:, None].astype(np.float32))
    if loss == "map":  # the simulated edit M' = M (1 - E), with M as the model had it
        m = upsample(base_maps[torch.from_numpy(picked)], tuple(x.shape[-2:]))
        edited = EditedSamples(x, y, m * (1 - e), original=m)
    else:              # RRR / HINT read the wrong-reason mask E itself
        edited = EditedSamples(x, y, e)
    unedited = ArraySet(decoy.subset(rest)) if len(rest) else None
    return EditedSet(edited, unedited, decoy.classes, ArraySet(decoy).input,
                     share=s.edited_share, steps=s.ft_steps,
                     counterfactual=overrides.get("counterfactual"))


def run_task(task: Task, s: Settings, work: str, device: str, threads: int) -> dict:
    """Train one run (resuming an interrupted one), score it, write its result.json."""
    torch.set_num_threads(threads)
    out = s.run_dir(Path(work), task)
    dev = torch.device(device)
    t = {"data": time.perf_counter()}
    decoy, clean, test = data(task.seed, s.train_limit, s.test_limit)
    test_set = ArraySet(test)
    t["data"] = time.perf_counter() - t["data"]
    t0 = time.perf_counter()
    command = "benchmarks/hitl.py"
    if task.kind == "base":
        train_data = decoy if task.name == "decoy" else clean
        cfg = TrainConfig(arch="abn_resnet", data=train_data.name, out=str(out), epochs=s.epochs,
                          seed=task.seed, device=device, precision=s.precision, augment=s.augment,
                          resume=True, command=command)
        train(cfg, train_set=ArraySet(train_data), test_set=test_set, progress=False)
        t["train"] = time.perf_counter() - t0
        if task.name == "decoy":  # its maps on the training set, reused by every fine-tune
            t0 = time.perf_counter()
            net, _ = load_checkpoint(out)
            maps = abn_maps(net.to(dev), decoy.tensors()[0], dev).half().numpy()
            buf = io.BytesIO()
            np.save(buf, maps)
            atomic_write_bytes(out / "train_maps.npy", buf.getvalue())
            t["maps"] = time.perf_counter() - t0
    else:
        base = s.run_dir(Path(work), Task("base", task.seed, "decoy"))
        base_maps = torch.from_numpy(np.load(base / "train_maps.npy").astype(np.float32))
        loss, overrides = METHODS[task.name]
        train_set = fine_tune_set(task, s, decoy, base_maps)
        t["setup"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cfg = FinetuneConfig(**{"gamma": s.gamma, **overrides}, epochs=s.ft_epochs, lr=s.ft_lr,
                             seed=task.seed, device=device, precision=s.precision,
                             augment=s.augment, edited_share=s.edited_share, steps=s.ft_steps)
        if loss == "map":
            finetune(base, out, train_set, test_set, cfg, command, progress=False, resume=True)
        else:
            tc = TrainConfig(arch="abn_resnet", data=decoy.name, out=str(out), epochs=cfg.epochs,
                             lr=cfg.lr, seed=task.seed, device=device, precision=s.precision,
                             augment=s.augment, init=str(base), resume=True, command=command)
            fn, lam = (rrr_loss, s.rrr_lambda) if loss == "rrr" else (hint_loss, s.hint_lambda)
            train(tc, {"lam": lam}, train_set, test_set, progress=False, loss_fn=fn)
        t["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = scores(out, test, dev)
    t["score"] = time.perf_counter() - t0
    row = {"method": {"decoy": "decoy (no fix)", "clean": "clean"}.get(task.name, task.name)
           if task.kind == "base" else task.name, "n": task.n, "seed": task.seed, **res,
           "time_s": t.get("train", 0.0), "phases_s": {k: round(v, 2) for k, v in t.items()},
           "code": code_digest()}
    atomic_write_text(out / "result.json", json.dumps(row, indent=1) + "\n")
    return row


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (method, N)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["n"]), []).append(r)
    out = []
    for (method, n), rs in groups.items():
        agg = {"method": method, "n": n, "seeds": len(rs)}
        for k in ("accuracy", "edited_accuracy", "wr", "time_s"):
            v = [r[k] for r in rs]
            agg[k] = statistics.fmean(v)
            agg[k + "_sd"] = statistics.stdev(v) if len(v) > 1 else 0.0
            agg[k + "_min"], agg[k + "_max"] = min(v), max(v)
        out.append(agg)
    return out


def goal(summary: list[dict], train_images: int) -> list[str]:
    """The issue's goal, checked per map-loss method: >= 88% with 1,000 edited maps, and
    within 2 points of the best of RRR/HINT given every annotation."""
    by = {(r["method"], r["n"]): r for r in summary}
    ref = [by[(m, train_images)]["accuracy"] for m in ("rrr", "hint") if (m, train_images) in by]
    if not ref or not any(n == 1000 for _, n in by):
        return ["Goal not checked: needs N=1000 and RRR or HINT with every annotation."]
    best = max(ref)
    lines = [f"Goal: with 1,000 edited maps test accuracy >= 88% and within 2 points of the best "
             f"of RRR/HINT with all {train_images} annotations ({best:.2%})."]
    for (m, n), r in by.items():
        if n == 1000 and METHODS.get(m, ("",))[0] == "map":
            ok = r["accuracy"] >= 0.88 and r["accuracy"] >= best - 0.02
            lines.append(f"- `{m}`: {r['accuracy']:.2%} -> {'reached' if ok else 'not reached'}")
    return lines


def plot(doc: dict, path: Path) -> None:
    """Test accuracy against N, one line per method, min-max across seeds as a band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9.5, 4.6), dpi=110)
    summary = doc["summary"]
    for r in summary:
        if r["n"] is None:
            style = {"decoy (no fix)": ("tab:red", "--"), "clean": ("tab:green", ":")}[r["method"]]
            ax.axhline(r["accuracy"] * 100, color=style[0], ls=style[1], lw=1.2,
                       label=f"{r['method']} ({r['accuracy']:.1%})")
    for m in dict.fromkeys(r["method"] for r in summary if r["n"] is not None):
        rs = sorted((r for r in summary if r["method"] == m), key=lambda r: r["n"])
        n = [r["n"] for r in rs]
        ax.plot(n, [r["accuracy"] * 100 for r in rs], marker="o", lw=1.5,
                label=m + (" (Mitsuhara et al.)" if m == "paper" else ""))
        if any(r["seeds"] > 1 for r in rs):
            ax.fill_between(n, [r["accuracy_min"] * 100 for r in rs],
                            [r["accuracy_max"] * 100 for r in rs], alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("N annotated / edited training images (log scale)")
    ax.set_ylabel("test accuracy, random decoys (%)")
    ax.axhline(88, color="gray", lw=0.8, alpha=0.6)
    ax.set_title("Decoy-FashionMNIST: fixing a shortcut from N annotations "
                 f"({doc['seeds']} seed(s), band = min-max)", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def machine(device: str, jobs: int, threads: int) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()}, {jobs} process(es)"
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    return f"{cpu}, {os.cpu_count()} cores; {jobs} process(es) x {threads} torch thread(s)"


def markdown(doc: dict) -> str:
    c = doc["config"]
    lines = ["# Human-in-the-loop benchmark: Decoy-FashionMNIST", ""]
    if doc["reduced"]:
        lines += ["**REDUCED CONFIGURATION -- a smoke run, not the protocol's result.** "
                  f"Differs from the full protocol in: {', '.join(doc['reduced'])}.", ""]
    lines += [f"Command: `{doc['command']}`  ", f"Machine: {doc['machine']}  ",
              f"Wall time of this invocation: {doc['wall_s'] / 60:.1f} min "
              f"({doc['reused']} of {doc['runs']} runs reused from `{doc['work']}`); compute "
              f"time of all runs: {doc['compute_s'] / 60:.1f} min; {doc['date']}.", "",
              f"Train images {doc['train_images']}, test images {doc['test_images']} (random "
              f"decoys). Base ABNs: {c['epochs']} epochs. Fine-tuning, every method alike: "
              f"{c['ft_epochs']} x {c['ft_steps']} batches of 128, {c['edited_share']:.0%} of each "
              f"from the N annotated images, lr {c['ft_lr']} (cosine), gamma {c['gamma']}, RRR "
              f"lambda {c['rrr_lambda']}, HINT lambda {c['hint_lambda']}; augmentation "
              f"{'on' if c['augment'] else 'off'}; seeds {c['seeds']}.", "",
              f"Shortcut check (decoy-trained accuracy on random decoys < "
              f"{c['shortcut_below']:.0%} on every seed): "
              + ", ".join(f"seed {r['seed']} {r['accuracy']:.1%}" for r in doc["rows"]
                          if r["method"] == "decoy (no fix)")
              + (" -- learned." if doc["shortcut_learned"] else " -- NOT learned on every seed."),
              "", *goal(doc["summary"], doc["train_images"]), "",
              "![test accuracy against N](" + Path(doc["plot"]).name + ")", "",
              "| method | N | share of train | test accuracy | accuracy, test maps edited | WR (lower is better) | train time / run |",
              "|---|---|---|---|---|---|---|"]
    for r in doc["summary"]:
        share = "-" if r["n"] is None else f"{r['n'] / doc['train_images']:.1%}"
        sd = (lambda k, fmt: f" ± {r[k + '_sd']:{fmt}}" if r["seeds"] > 1 else "")
        lines.append(f"| {r['method']} | {r['n'] if r['n'] is not None else '-'} | {share} | "
                     f"{r['accuracy']:.2%}{sd('accuracy', '.2%')} | "
                     f"{r['edited_accuracy']:.2%}{sd('edited_accuracy', '.2%')} | "
                     f"{r['wr']:.1f}{sd('wr', '.1f')} | {r['time_s']:.0f} s |")
    lines += ["", "Where the time goes (seconds summed over runs and seeds):", "",
              "| run | data | training | maps | set-up | scoring |", "|---|---|---|---|---|---|"]
    for name, ph in doc["phases"].items():
        lines.append(f"| {name} | " + " | ".join(f"{ph.get(k, 0):.0f}" for k in
                                                ("data", "train", "maps", "setup", "score")) + " |")
    lines += ["", "Methods: `decoy (no fix)` and `clean` are ABNs trained from scratch on decoy "
              "and clean data. `paper` = Mitsuhara et al.: map loss, g' = (1 + M) g, feature "
              "extractor frozen; `-unfrozen` trains it too; `mask` uses g' = M g. "
              "`counterfactual`: the map loss plus, on each edited image, the region whose "
              "attention was removed refilled with content that carries no label information "
              "(another image's pixels or a random flat value), so that the classification loss "
              "itself teaches the model not to use it. `rrr` / `hint` fine-tune the same "
              "decoy-trained ABN with their losses on the same N annotations. `accuracy, test "
              "maps edited`: every test image's map edited to M (1 - E) and the perception branch "
              "re-run with it, as in the editor. ± is the standard deviation over seeds."]
    if len(doc["code"]) > 1:
        lines += ["", f"Note: the runs were made by {len(doc['code'])} code versions "
                  f"({', '.join(doc['code'])}); runs are keyed by their settings, not the code."]
    return "\n".join(lines) + "\n"


def plan(seeds: list[int], methods: list[str], ns: list[int]) -> list[Task]:
    return [Task("base", s, k) for s in seeds for k in ("decoy", "clean")] + \
        [Task("finetune", s, m, n) for s in seeds for n in ns for m in methods]


def execute(tasks: list[Task], s: Settings, work: Path, device: str, jobs: int, threads: int,
            failed: list[str]) -> tuple[list[dict], int]:
    """Run the tasks in a pool, each fine-tune after its seed's decoy base; finished runs
    (a result.json in their folder) are reused. Returns the rows and how many were reused;
    a run that fails is appended to `failed` (and its seed's fine-tunes are dropped)."""
    rows: list[dict] = []
    todo = []
    for t in tasks:
        res = s.run_dir(work, t) / "result.json"
        (rows.append(json.loads(res.read_text())) if res.is_file() else todo.append(t))
    reused = len(rows)
    done_bases = {t.seed for t in tasks if t.kind == "base" and t.name == "decoy" and t not in todo}
    if not todo:
        return rows, reused
    print(f"{len(todo)} run(s) to do, {reused} reused; {jobs} process(es)", file=sys.stderr)
    ctx = mp.get_context("spawn")  # safe with CUDA in the workers
    with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
        running: dict[Future, Task] = {}
        waiting = list(todo)
        start = time.perf_counter()
        while waiting or running:
            ready = [t for t in waiting if t.kind == "base" or t.seed in done_bases]
            for t in ready[:max(0, jobs * 2 - len(running))]:
                waiting.remove(t)
                running[pool.submit(run_task, t, s, str(work), device, threads)] = t
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                t = running.pop(f)
                try:
                    row = f.result()
                except Exception as e:  # report, go on with the rest, fail at the end
                    failed.append(f"seed {t.seed} {t.folder}: {type(e).__name__}: {e}")
                    print(f"FAILED {failed[-1]}", file=sys.stderr)
                    if t.kind == "base" and t.name == "decoy":
                        waiting = [w for w in waiting if w.seed != t.seed]
                    continue
                rows.append(row)
                if t.kind == "base" and t.name == "decoy":
                    done_bases.add(t.seed)
                print(f"[{(time.perf_counter() - start) / 60:5.1f} min] seed {t.seed} "
                      f"{t.folder:28} accuracy {row['accuracy']:.2%}  WR {row['wr']:5.1f}  "
                      f"({row['time_s']:.0f} s)", file=sys.stderr)
    return rows, reused


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", default=FULL["n"], help="annotated images per run, comma-separated; 'all'")
    p.add_argument("--seeds", default=FULL["seeds"])
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"from {', '.join(METHODS)}")
    p.add_argument("--epochs", type=int, default=FULL["epochs"], help="base ABN training epochs")
    p.add_argument("--ft-epochs", type=int, default=FULL["ft_epochs"], help="fine-tuning epochs")
    p.add_argument("--ft-steps", type=int, default=FULL["ft_steps"],
                   help="batches per fine-tuning epoch (the same for every method and N)")
    p.add_argument("--edited-share", type=float, default=FinetuneConfig.edited_share,
                   help="share of each fine-tuning batch drawn from the N annotated images")
    p.add_argument("--ft-lr", type=float, default=FinetuneConfig.lr)
    p.add_argument("--gamma", type=float, default=1.0, help="map-loss weight")
    p.add_argument("--rrr-lambda", type=float, default=1.0,
                   help="RRR weight (at 1 the term starts ~7x the cross-entropies)")
    p.add_argument("--hint-lambda", type=float, default=1.0,
                   help="HINT weight (at 1 the term starts about equal to them)")
    p.add_argument("--augment", action="store_true",
                   help="random shifts and flips (off by default, as in Ross et al. and "
                        "Friedrich et al.; with them the decoy shortcut is learned less)")
    p.add_argument("--shortcut-below", type=float, default=0.5,
                   help="the decoy base has learned the shortcut when its accuracy on random "
                        "decoys is below this")
    p.add_argument("--train-limit", type=int, help="use a seeded subset of the training images")
    p.add_argument("--test-limit", type=int, help="use a seeded subset of the test images")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--jobs", type=int, help="parallel run processes (default: one per core on "
                   "a CPU, 4 on a GPU)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--work", default=str(Path.home() / ".cache" / "explain" / "hitl"),
                   help="finished runs are kept here, in subfolders named by a digest of the "
                        "settings they depend on (so other settings never reuse them)")
    p.add_argument("--out", help="results file stem (default benchmarks/results/hitl[-reduced])")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    reduced = [f"{k.replace('_', '-')}={getattr(args, k)}" for k, v in FULL.items()
               if str(getattr(args, k)) != str(v)]
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        "hitl-reduced" if reduced else "hitl")
    seeds = [int(x) for x in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    if not 0 < args.edited_share <= 1:
        p.error(f"--edited-share: {args.edited_share} must be in (0, 1]")
    n_train = min(args.train_limit or 60_000, 60_000)
    ns = []
    for txt in args.n.split(","):
        n = n_train if txt == "all" else int(txt)
        if n > n_train:
            print(f"note: --n {n} is more than the {n_train} training images; using {n_train}",
                  file=sys.stderr)
        ns.append(min(n, n_train))
    ns = list(dict.fromkeys(ns))
    s = Settings(args.epochs, args.ft_epochs, args.ft_steps, args.ft_lr, args.edited_share,
                 args.gamma, args.rrr_lambda, args.hint_lambda, args.augment, args.train_limit,
                 args.test_limit, args.precision, torch.device(args.device).type)
    work = Path(args.work)
    tasks = plan(seeds, methods, ns)
    jobs = args.jobs or (4 if args.device.startswith("cuda") else (os.cpu_count() or 1))
    jobs = max(1, min(jobs, len(tasks)))
    failed: list[str] = []
    rows, reused = execute(tasks, s, work, args.device, jobs, args.threads, failed)
    if not rows:
        print("no run finished", file=sys.stderr)
        return 1
    order = {t.folder + str(t.seed): i for i, t in enumerate(tasks)}
    key = (lambda r: order.get(({"decoy (no fix)": "decoy", "clean": "clean"}.get(r["method"], r["method"])
                                + ("" if r["n"] is None else f"-n{r['n']}")) + str(r["seed"]), 0))
    rows.sort(key=key)
    phases: dict[str, dict[str, float]] = {}
    for r in rows:
        ph = phases.setdefault(r["method"], {})
        for k, v in r["phases_s"].items():
            ph[k] = ph.get(k, 0.0) + v
    decoy_acc = [r["accuracy"] for r in rows if r["method"] == "decoy (no fix)"]
    doc = {"command": "python " + shlex.join(["benchmarks/hitl.py"] + (argv if argv is not None else sys.argv[1:])),
           "reduced": reduced, "config": {**vars(args), "seeds": args.seeds},
           "settings": asdict(s), "work": str(work), "machine": machine(args.device, jobs, args.threads),
           "train_images": n_train, "test_images": min(args.test_limit or 10_000, 10_000),
           "seeds": len(seeds), "date": time.strftime("%Y-%m-%d %H:%M"),
           "shortcut_learned": all(a < args.shortcut_below for a in decoy_acc),
           "runs": len(rows), "reused": reused, "wall_s": time.perf_counter() - t_start,
           "compute_s": sum(sum(r["phases_s"].values()) for r in rows),
           "code": sorted({r["code"] for r in rows}), "phases": phases,
           "plot": str(out.with_suffix(".png")), "rows": rows, "summary": summarise(rows)}
    plot(doc, out.with_suffix(".png"))
    atomic_write_text(out.with_suffix(".json"), json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(doc))
    print(markdown(doc))
    for msg in failed:
        print(f"error: run failed: {msg}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
