"""Human-in-the-loop benchmark (BENCHMARKS.md): Decoy-FashionMNIST, edit -> fine-tune.

For each seed: train an ABN on the decoy training set (it learns the shortcut) and, as the
upper reference, the same ABN on clean data. Then for each N, simulate a person's edits on N
training images by removing the decoy from the ABN map, M' = M * (1 - E), and fine-tune with
the map loss (explain.finetune) -- the paper's method (g' = (1 + M) g, features frozen) and
the variants asked for -- next to RRR (Ross et al.) and HINT (Selvaraju et al.) given the
same N annotations, each fine-tuned from the same decoy-trained ABN with the same schedule.
Reported: test accuracy on random decoys, the wrong-reason score WR of the ABN map
(Friedrich et al.), and wall time. The checkpoint is always the last epoch's (no test-set
selection). The script writes its own tables: benchmarks/results/hitl.{md,json}, or
hitl-reduced.{md,json} when run with a reduced configuration.

    python benchmarks/hitl.py                      # the full protocol (hours on a CPU)
    python benchmarks/hitl.py --train-limit 3000 --test-limit 1000 --epochs 3 \\
        --ft-epochs 1 --seeds 0                    # a reduced smoke run
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.atomic import atomic_write_text  # noqa: E402
from explain.checkpoint import load_checkpoint  # noqa: E402
from explain.datasets import ArrayData, decoy_fmnist, fashion_mnist  # noqa: E402
from explain.explanation import upsample  # noqa: E402
from explain.finetune import FinetuneConfig, finetune  # noqa: E402
from explain.losses import LossOut  # noqa: E402
from explain.metrics.localisation import wrong_reason  # noqa: E402
from explain.train import TrainConfig, train  # noqa: E402
from explain.trainsets import ArraySet  # noqa: E402

FULL = {"epochs": 15, "ft_epochs": 3, "train_limit": None, "test_limit": None,
        "seeds": "0,1,2", "n": "100,1000,all"}
METHODS = {  # name -> (loss, fine-tune config overrides)
    "paper": ("map", {"perception": "residual", "freeze_features": True}),
    "paper-unfrozen": ("map", {"perception": "residual", "freeze_features": False}),
    "mask": ("map", {"perception": "mask", "freeze_features": True}),
    "mask-unfrozen": ("map", {"perception": "mask", "freeze_features": False}),
    "rrr": ("rrr", {"freeze_features": False}),
    "hint": ("hint", {"freeze_features": False}),
}


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


@torch.no_grad()
def abn_maps(net, data: ArrayData, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(M(x) at input resolution (N, 1, H, W), predictions (N,))."""
    net.eval()
    x, _ = data.tensors()
    maps, preds = [], []
    for s in range(0, len(x), batch_size):
        out = net.forward_all(x[s:s + batch_size])
        maps.append(upsample(out.att_map.float(), tuple(x.shape[-2:])))
        preds.append(out.logits.argmax(1))
    return torch.cat(maps), torch.cat(preds)


def scores(ckpt: Path, test: ArrayData) -> dict:
    """Test accuracy, WR of the ABN map, and the accuracy when every test map is edited
    (M' = M * (1 - E)) and the perception branch re-run with it, as the editor does."""
    net, _ = load_checkpoint(ckpt)
    maps, preds = abn_maps(net, test)
    x, y = test.tensors()
    e = torch.from_numpy(test.masks[:, None].astype(np.float32))
    with torch.no_grad():
        edited = torch.cat([net(x[s:s + 500], att=maps[s:s + 500] * (1 - e[s:s + 500])).argmax(1)
                            for s in range(0, len(x), 500)])
    wr = wrong_reason(maps, torch.from_numpy(test.masks))  # Friedrich et al.'s WR, per image
    return {"accuracy": float((preds == y).float().mean()), "wr": float(torch.nanmean(wr)),
            "edited_accuracy": float((edited == y).float().mean())}


def subset(data: ArrayData, n: int | None, seed: int) -> ArrayData:
    if n is None or n >= len(data):
        return data
    return data.subset(np.sort(np.random.default_rng(seed).permutation(len(data))[:n]))


def finished(out: Path) -> float | None:
    """The training time of a finished run in `out` (so reruns reuse it), else None."""
    card = out / "card.json"
    return json.loads(card.read_text())["metrics"]["train_time_s"] if card.is_file() else None


def run_train(out: Path, data: ArrayData, test: ArrayData, epochs: int, seed: int, args) -> float:
    """Train an ABN from scratch; an interrupted run resumes, a finished one is reused."""
    cfg = TrainConfig(arch="abn_resnet", data=data.name, out=str(out), epochs=epochs, seed=seed,
                      device=args.device, precision=args.precision, augment=args.augment,
                      resume=True, command=shlex.join(sys.argv))
    if finished(out) is None:
        train(cfg, train_set=ArraySet(data), test_set=ArraySet(test), progress=args.progress)
    return finished(out)


def run_method(method: str, base: Path, out: Path, train_data: ArrayData, test: ArrayData,
               edited: np.ndarray, base_maps: torch.Tensor, seed: int, args) -> float:
    """Fine-tune `base` with `method` given annotations on the `edited` indices (a finished
    run in `out` is reused, an interrupted one resumes); returns the training time."""
    if finished(out) is not None:
        return finished(out)
    loss, overrides = METHODS[method]
    n, h, w = train_data.images.shape
    has = np.zeros(n, bool)
    has[edited] = True
    e = torch.from_numpy(train_data.masks[:, None].astype(np.float32))
    if loss == "map":  # the simulated edit M' = M * (1 - E)
        target = torch.where(torch.from_numpy(has)[:, None, None, None], base_maps * (1 - e),
                             torch.zeros(n, 1, h, w))
    else:              # RRR / HINT read the wrong-reason mask E itself
        target = e * torch.from_numpy(has)[:, None, None, None]
    train_set = ArraySet(train_data, {"edit_map": target.numpy(), "has_edit": has})
    cfg = FinetuneConfig(gamma=args.gamma, epochs=args.ft_epochs, lr=args.ft_lr, seed=seed,
                         device=args.device, precision=args.precision, augment=args.augment,
                         **overrides)
    if loss == "map":
        finetune(base, out, train_set, ArraySet(test), cfg, shlex.join(sys.argv), args.progress,
                 resume=True)
    else:
        tc = TrainConfig(arch="abn_resnet", data=train_data.name, out=str(out), epochs=cfg.epochs,
                         lr=cfg.lr, seed=seed, device=cfg.device, precision=cfg.precision,
                         augment=cfg.augment, init=str(base), resume=True,
                         command=shlex.join(sys.argv))
        fn = rrr_loss if loss == "rrr" else hint_loss
        lam = args.rrr_lambda if loss == "rrr" else args.hint_lambda
        train(tc, {"lam": lam}, train_set, ArraySet(test), progress=args.progress, loss_fn=fn)
    return finished(out)


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
        out.append(agg)
    return out


def markdown(doc: dict) -> str:
    c = doc["config"]
    lines = ["# Human-in-the-loop benchmark: Decoy-FashionMNIST", ""]
    if doc["reduced"]:
        lines += ["**REDUCED CONFIGURATION -- a smoke run, not the protocol's result.** "
                  f"Differs from the full protocol in: {', '.join(doc['reduced'])}.", ""]
    lines += [f"Command: `{doc['command']}`", "",
              f"Train images {doc['train_images']}, test images {doc['test_images']} (random "
              f"decoys); base training {c['epochs']} epochs, fine-tuning {c['ft_epochs']} "
              f"epoch(s), lr {c['ft_lr']}, gamma {c['gamma']}, RRR lambda {c['rrr_lambda']}, "
              f"HINT lambda {c['hint_lambda']}; augmentation {'on' if c['augment'] else 'off'}; "
              f"seeds {c['seeds']}; {doc['device']}; "
              f"{doc['date']}.", "",
              "| method | N edited / annotated | share of train | test accuracy | accuracy, test maps edited | WR (lower is better) | wall time |",
              "|---|---|---|---|---|---|---|"]
    for r in doc["summary"]:
        share = "-" if r["n"] in (None, 0) else f"{r['n'] / doc['train_images']:.1%}"
        sd = (lambda k, fmt: f" ± {r[k + '_sd']:{fmt}}" if r["seeds"] > 1 else "")
        lines.append(f"| {r['method']} | {r['n'] if r['n'] is not None else '-'} | {share} | "
                     f"{r['accuracy']:.2%}{sd('accuracy', '.2%')} | "
                     f"{r['edited_accuracy']:.2%}{sd('edited_accuracy', '.2%')} | "
                     f"{r['wr']:.1f}{sd('wr', '.1f')} | {r['time_s']:.0f} s |")
    lines += ["", "Methods: `decoy (no fix)` and `clean` are ABNs trained from scratch on decoy "
              "and clean data. `paper` = Mitsuhara et al.: map loss, g' = (1 + M) g, feature "
              "extractor frozen; `-unfrozen` trains it too; `mask` uses g' = M g (no residual). "
              "`rrr` / `hint` fine-tune the same decoy-trained ABN with their losses on the same "
              "N annotations. `accuracy, test maps edited`: every test image's map edited to "
              "M (1 - E) (its decoy removed) and the perception branch re-run with it, as in "
              "the editor. ± is the standard deviation over seeds (shown with 2 or more). Wall "
              "time: the training's own measurement, on a machine shared with other jobs."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", default=FULL["n"], help="edited images per run, comma-separated; 'all'")
    p.add_argument("--seeds", default=FULL["seeds"])
    p.add_argument("--methods", default=",".join(METHODS), help=f"from {', '.join(METHODS)}")
    p.add_argument("--epochs", type=int, default=FULL["epochs"], help="base ABN training epochs")
    p.add_argument("--ft-epochs", type=int, default=FULL["ft_epochs"], help="fine-tuning epochs")
    p.add_argument("--ft-lr", type=float, default=0.01)
    p.add_argument("--gamma", type=float, default=1.0, help="map-loss weight")
    p.add_argument("--rrr-lambda", type=float, default=1.0,
                   help="RRR weight (at 1 the term starts ~7x the cross-entropies)")
    p.add_argument("--hint-lambda", type=float, default=1.0,
                   help="HINT weight (at 1 the term starts about equal to them)")
    p.add_argument("--augment", action="store_true",
                   help="random shifts and flips (off by default, as in Ross et al. and "
                        "Friedrich et al.; with them the decoy shortcut is learned less)")
    p.add_argument("--train-limit", type=int, help="use a seeded subset of the training images")
    p.add_argument("--test-limit", type=int, help="use a seeded subset of the test images")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--work", default=str(ROOT / "runs" / "hitl"), help="checkpoints go here")
    p.add_argument("--out", help="results file stem (default benchmarks/results/hitl[-reduced])")
    p.add_argument("--progress", action="store_true", help="show per-epoch progress bars")
    args = p.parse_args(argv)
    reduced = [f"{k.replace('_', '-')}={getattr(args, k)}" for k, v in FULL.items()
               if str(getattr(args, k)) != str(v)]
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        "hitl-reduced" if reduced else "hitl")
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    rows: list[dict] = []
    tag = f"L{args.train_limit or 'all'}-E{args.epochs}{'-aug' if args.augment else ''}"
    for seed in seeds:
        decoy = subset(decoy_fmnist("train", seed), args.train_limit, seed)
        test = subset(decoy_fmnist("test", seed), args.test_limit, seed)
        clean = subset(fashion_mnist("train"), args.train_limit, seed)
        work = Path(args.work) / tag / f"seed{seed}"
        base, ref = work / "decoy", work / "clean"
        t = run_train(base, decoy, test, args.epochs, seed, args)
        rows.append({"method": "decoy (no fix)", "n": None, "seed": seed, "time_s": t, **scores(base, test)})
        t = run_train(ref, clean, test, args.epochs, seed, args)
        rows.append({"method": "clean", "n": None, "seed": seed, "time_s": t, **scores(ref, test)})
        net, _ = load_checkpoint(base)
        base_maps, _ = abn_maps(net, decoy)
        order = np.random.default_rng(seed).permutation(len(decoy))
        for n_txt in args.n.split(","):
            n = len(decoy) if n_txt == "all" else min(int(n_txt), len(decoy))
            for method in methods:
                lam = {"rrr": f"-l{args.rrr_lambda}", "hint": f"-l{args.hint_lambda}"}.get(method, "")
                dst = work / f"{method}-n{n}-g{args.gamma}-e{args.ft_epochs}-lr{args.ft_lr}{lam}"
                t = run_method(method, base, dst, decoy, test, order[:n], base_maps, seed, args)
                rows.append({"method": method, "n": n, "seed": seed, "time_s": t, **scores(dst, test)})
                print(f"seed {seed} {method:15} N={n:6}: accuracy {rows[-1]['accuracy']:.2%}, "
                      f"WR {rows[-1]['wr']:.1f}, {t:.0f} s", file=sys.stderr)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"CPU, {torch.get_num_threads()} thread(s)"
    doc = {"command": "python " + shlex.join(["benchmarks/hitl.py"] + (argv or sys.argv[1:])),
           "reduced": reduced, "config": {k: v for k, v in vars(args).items() if k != "progress"},
           "train_images": len(decoy), "test_images": len(test), "device": device,
           "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows, "summary": summarise(rows)}
    atomic_write_text(out.with_suffix(".json"), json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
