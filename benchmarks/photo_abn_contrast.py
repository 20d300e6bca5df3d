"""How much the ImageNet ABN's map may vary before its frozen perception branch stops
agreeing with the teacher: top-1 agreement against `map_contrast` (bn_att3's scale, see
explain/models/abn_efficientnet.py), on training views only, so that the contrast the zoo
model uses is chosen without its held-out photos. The largest contrast whose agreement is
at least --goal is the choice; held-out agreement is printed beside it, not used.

    python benchmarks/photo_abn_contrast.py --model CHECKPOINT --views ~/.cache/explain/photo-views-8k

Writes benchmarks/results/photo_abn_contrast.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from explain import create_model, load_image  # noqa: E402
from explain.photos import collect  # noqa: E402
from explain.trainsets import FeatureViews  # noqa: E402
from photo_abn import top1  # noqa: E402
from record import under_load, write  # noqa: E402


@torch.no_grad()
def view_agreement(net: torch.nn.Module, views: FeatureViews, every: int) -> float:
    idx = list(range(0, len(views), every))
    hits = 0
    for i in range(0, len(idx), 100):
        b = views.__getitems__(idx[i:i + 100])
        hits += int((net(b["x"], from_features=True).argmax(1) == b["y"]).sum())
    return hits / len(idx)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="ImageNet ABN checkpoint folder (M's statistics calibrated)")
    ap.add_argument("--views", default=str(Path.home() / ".cache" / "explain" / "photo-views-8k"),
                    help="feature views written by `explain distil-views`")
    ap.add_argument("--contrasts", default="1,0.5,0.35,0.25,0.15")
    ap.add_argument("--every", type=int, default=8, help="use every N-th training view")
    ap.add_argument("--goal", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, teacher = create_model(args.model), create_model("efficientnet_lite0")
    views, photos = FeatureViews(Path(args.views), "train"), collect()
    held = photos.held_photos + photos.held_cutouts
    x = torch.stack([model.input(load_image(f))[0] for f in held])  # decoded once
    teacher_top1 = top1(teacher.net, x)

    def run() -> list[dict]:
        rows = []
        for c in (float(v) for v in args.contrasts.split(",")):
            model.net.bn_att3.weight.data.fill_(c)
            rows.append({"contrast": c, "train_views": view_agreement(model.net, views, args.every),
                         "held_out": float((top1(model.net, x) == teacher_top1).float().mean())})
            print(rows[-1], file=sys.stderr, flush=True)
        return rows

    rows, load = under_load(run)
    ok = [r["contrast"] for r in rows if r["train_views"] >= args.goal]
    choice = max(ok) if ok else None
    table = ("| map contrast | agreement, training views | agreement, held-out photos |\n|---|---|---|\n"
             + "\n".join(f"| {r['contrast']:g}{' (chosen)' if r['contrast'] == choice else ''} | "
                         f"{r['train_views']:.1%} | {r['held_out']:.1%} |" for r in rows)
             + f"\n\nChosen: the largest contrast with >= {args.goal:.0%} agreement on training "
               f"views: {choice if choice is not None else 'none'}.")
    env = {"model": args.model, "threads": args.threads, "load_average_1_5_15": load,
           "views": len(range(0, len(views), args.every)), "held_out": len(held), "choice": choice}
    print(write("photo_abn_contrast", env, rows,
                f"every {args.every}th training view, {len(held)} held-out photos and cut-outs", table))
    return 0 if choice is not None else 1


if __name__ == "__main__":
    sys.exit(main())
