"""The ImageNet ABN against its goals (issue 14), on photos its training never saw.

- top-1 agreement with the teacher (the pip-installed EfficientNet-Lite0) on the held-out
  photos and cut-outs of explain.photos, as `explain` shows them to the model (goal >= 90%);
- top-1 accuracy on foolbox's 20 labelled ImageNet validation photos, the model's next to the
  teacher's (goal: at most one image fewer);
- the pointing game on composites: a held-out cut-out pasted at a random place (25-60% of
  the side) on a random crop of a held-out photo, its box from the alpha channel; the ABN's
  own map against Grad-CAM on the same model and on the teacher (goal: at least Grad-CAM's
  on the same model);
- the native map's cost: `Explainer(model, "abn")` against the model's plain forward pass
  on the same batch, calls interleaved, medians (goal <= 1.05x).

    python benchmarks/photo_abn.py [--model abn] [--composites 300] [--threads 2]
        [--foolbox DIR_OR_WHEEL]

Writes benchmarks/results/photo_abn.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from explain import Explainer, create_model, load_image  # noqa: E402
from explain.atomic import atomic_write_text  # noqa: E402
from explain.distil import paste, random_crop, rgba  # noqa: E402
from explain.metrics.localisation import box_masks, energy_pointing_game, pointing_game  # noqa: E402
from explain.photos import collect, labelled  # noqa: E402
from explain.preprocess import IMAGENET  # noqa: E402
from record import under_load, write  # noqa: E402
from speed import time_round_robin  # noqa: E402

WHEELS = Path.home() / ".cache" / "explain" / "wheels"
BATCH = 16


@torch.no_grad()
def top1(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(x[i:i + BATCH]).argmax(1) for i in range(0, len(x), BATCH)])


def agreement(model, teacher, files: list[Path]) -> dict:
    x = torch.stack([model.input(load_image(f))[0] for f in files])
    a, t = top1(model.net, x), top1(teacher.net, x)
    return {"images": len(files), "agreement": float((a == t).float().mean())}


def accuracy(model, teacher, source: str | None) -> dict:
    photos = labelled(source)
    x = torch.stack([model.input(rgb)[0] for _, rgb, _ in photos])
    y = torch.tensor([label for _, _, label in photos])
    return {"images": len(photos), "model": int((top1(model.net, x) == y).sum()),
            "teacher": int((top1(teacher.net, x) == y).sum())}


def composites(photos, n: int, seed: int = 0, held: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """n composites (normalised, 224 px) of held-out (or training) photos and cut-outs, and
    their object boxes."""
    rng = np.random.default_rng(seed)
    grounds = [load_image(p) for p in (photos.held_photos if held else photos.train_photos)]
    cutouts = [rgba(p) for p in (photos.held_cutouts if held else photos.train_cutouts)]
    xs, boxes = [], []
    for _ in range(n):
        ground = random_crop(Image.fromarray(grounds[int(rng.integers(len(grounds)))]), rng,
                             scale=(0.3, 1.0))
        im, box = paste(cutouts[int(rng.integers(len(cutouts)))], ground, rng, side=(0.25, 0.6))
        xs.append(IMAGENET.normalise(np.array(im)))
        boxes.append(box)
    return torch.stack(xs), torch.tensor(boxes, dtype=torch.float32)


def localisation(model, method: str, x: torch.Tensor, boxes: torch.Tensor) -> dict:
    """The pointing game and the energy pointing game (the map's mass inside the box)."""
    hits, energy = [], []
    with Explainer(model, method=method) as ex:
        for i in range(0, len(x), BATCH):
            maps = ex(x[i:i + BATCH]).maps
            regions, _ = box_masks(boxes[i:i + BATCH], tuple(maps.shape[-2:]))
            hits.append(pointing_game(maps, regions))
            energy.append(energy_pointing_game(maps, regions))
    h = torch.cat(hits)
    return {"pointing_game": float(h[~h.isnan()].mean()),
            "mass_in_box": float(torch.cat(energy).nanmean())}


def pointing(model, method: str, x: torch.Tensor, boxes: torch.Tensor) -> float:
    return localisation(model, method, x, boxes)["pointing_game"]


def cost(model, reps: int) -> dict:
    x = torch.randn(8, 3, 224, 224)
    with Explainer(model, method="abn") as ex:
        def forward():
            with torch.no_grad():
                model.net(x)
        t = time_round_robin({"forward": forward, "native": lambda: ex(x)}, reps)
    return {"forward_ms": t["forward"] * 1e3, "native_ms": t["native"] * 1e3,
            "ratio": t["native"] / t["forward"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="abn", help="the ImageNet ABN: registry name or checkpoint folder")
    ap.add_argument("--composites", type=int, default=300)
    ap.add_argument("--reps", type=int, default=7, help="timed rounds of the cost measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--card", action="store_true",
                    help="also write the figures into the model folder's card.json (metrics.photo_abn)")
    ap.add_argument("--foolbox", default=next((str(p) for p in sorted(WHEELS.glob("foolbox-*.whl"))), None),
                    help="foolbox wheel or data folder (default: the installed package, or "
                         "a wheel in ~/.cache/explain/wheels)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, teacher = create_model(args.model), create_model("efficientnet_lite0")
    photos = collect()

    def run() -> dict:
        held = agreement(model, teacher, photos.held_photos + photos.held_cutouts)
        acc = accuracy(model, teacher, args.foolbox)
        x, boxes = composites(photos, args.composites)
        pg = {"abn (native)": pointing(model, "abn", x, boxes),
              "gradcam (same model)": pointing(model, "gradcam", x, boxes),
              "gradcam (teacher)": pointing(teacher, "gradcam", x, boxes)}
        return {"held_out": held, "labelled": acc, "pointing": pg,
                "composites": args.composites, "cost": cost(model, args.reps)}

    r, load = under_load(run)
    held, acc, pg, c = r["held_out"], r["labelled"], r["pointing"], r["cost"]
    rows = [
        ["top-1 agreement with the teacher, held-out photos and cut-outs",
         f"{held['agreement']:.1%} of {held['images']}", ">= 90%",
         held["agreement"] >= 0.9],
        ["top-1 accuracy, foolbox's labelled ImageNet photos (model / teacher)",
         f"{acc['model']} / {acc['teacher']} of {acc['images']}", "teacher - 1 or better",
         acc["model"] >= acc["teacher"] - 1],
        *[[f"pointing game on {r['composites']} composites, {k}", f"{v:.1%}",
           ">= Grad-CAM, same model" if k.startswith("abn") else "",
           v >= pg["gradcam (same model)"] if k.startswith("abn") else None]
          for k, v in pg.items()],
        ["native map / forward pass, batch 8 x 224 px",
         f"{c['ratio']:.3f} ({c['native_ms']:.0f} / {c['forward_ms']:.0f} ms)", "<= 1.05",
         c["ratio"] <= 1.05],
    ]
    table = "| measure | value | goal | met |\n|---|---|---|---|\n" + "\n".join(
        f"| {m} | {v} | {g} | {'' if ok is None else ('yes' if ok else 'NO')} |"
        for m, v, g, ok in rows)
    env = {"model": args.model, "threads": args.threads, "load_average_1_5_15": load,
           "cpus": os.cpu_count(), "torch": torch.__version__}
    print(write("photo_abn", {**env, **r}, [dict(zip(("measure", "value", "goal", "met"), row))
                                            for row in rows],
                f"model `{args.model}`, torch {torch.__version__}, {args.threads} CPU threads",
                table))
    if args.card:
        folder = Path(args.model) if Path(args.model).is_dir() else ROOT / "explain" / "zoo" / model.name
        card = json.loads((folder / "card.json").read_text())
        card.setdefault("metrics", {})["photo_abn"] = {
            "command": shlex.join(["python", "benchmarks/photo_abn.py", *sys.argv[1:]]),
            "held_out_agreement": held["agreement"], "held_out_images": held["images"],
            "labelled_correct": acc["model"], "labelled_correct_teacher": acc["teacher"],
            "labelled_images": acc["images"], "pointing_game": pg,
            "composites": args.composites, "native_cost_ratio": c["ratio"]}
        atomic_write_text(folder / "card.json", json.dumps(card, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
