"""Edit the ImageNet ABN's maps and fine-tune: does the model look where the person said,
on photos it was not tuned on? (issue 14: "edit maps of their own photos and fine-tune").

The edits are what a person removing background attention would paint, made without a
person: on composites of training photos (a training cut-out pasted on a training photo,
its box known: benchmarks/photo_abn.composites), the map outside the object's box is
removed (in edit units, M' = M inside the box, 0 outside: `--from-masks`' "remove"). The
label of each composite is the teacher's top-1 (no human labels). `explain.finetune` then
runs with the model's own settings (explain.finetune_config.MAP_ONLY), and before and after
we measure, on held-out composites (held-out photos and cut-outs, another seed), the native
map's pointing game and the share of its mass inside the box, and top-1 agreement with the
teacher on the held-out photos and cut-outs of benchmarks/photo_abn.py.

    python benchmarks/photo_finetune.py [--edits 64] [--composites 300] [--threads 2]

Writes benchmarks/results/photo_finetune.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from explain import create_model  # noqa: E402
from explain.edits import map_scale, model_maps  # noqa: E402
from explain.finetune import (EditedSamples, EditedSet, FinetuneConfig, checkpoint_dir,  # noqa: E402
                              edit_agreement, finetune, tuning_config)
from explain.metrics.localisation import box_masks  # noqa: E402
from explain.photos import collect  # noqa: E402
from photo_abn import BATCH, agreement, composites, localisation, top1  # noqa: E402
from record import under_load, write  # noqa: E402


def edited_composites(model, teacher, photos, n: int, seed: int) -> EditedSamples:
    """n training composites, labelled by the teacher, with the map outside the box removed."""
    x, boxes = composites(photos, n, seed=seed, held=False)
    units = torch.cat([model_maps(model, x[i:i + BATCH])[0] for i in range(0, n, BATCH)])
    inside, _ = box_masks(boxes, tuple(units.shape[-2:]))
    scale = map_scale(model)
    original = scale.raw(units[:, None])
    maps = scale.raw(units[:, None] * inside[:, None].float())
    return EditedSamples(x, top1(teacher.net, x), maps, original, scale)


def scores(model, teacher, photos, held_x, held_boxes, edited: EditedSamples) -> dict:
    agree = edit_agreement(model.net, edited)
    return {**localisation(model, "abn", held_x, held_boxes),
            "teacher_agreement": agreement(model, teacher, photos.held_photos + photos.held_cutouts),
            "map_agreement_edited": agree["map_agreement"],
            "map_correlation_edited": agree["map_correlation"],
            "edited_agreement_with_teacher": agree["edited_accuracy"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="abn", help="the ImageNet ABN: name or checkpoint folder")
    ap.add_argument("--edits", type=int, default=64, help="edited training composites")
    ap.add_argument("--composites", type=int, default=300, help="held-out composites")
    ap.add_argument("--steps", type=int, help="fine-tuning steps (default: the model's own)")
    ap.add_argument("--lr", type=float, help="learning rate (default: the model's own)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    (cfg, before, after), load = under_load(lambda: run(args))
    rows = [("native map's pointing game, held-out composites", "pointing_game", "{:.1%}"),
            ("native map's mass inside the box, held-out composites", "mass_in_box", "{:.1%}"),
            ("top-1 agreement with the teacher, held-out photos and cut-outs",
             "teacher_agreement", "{:.1%}"),
            ("map agreement with the edits (edit units), edited composites",
             "map_agreement_edited", "{:.3f}"),
            ("map correlation with the edits, edited composites", "map_correlation_edited",
             "{:.3f}"),
            ("top-1 agreement with the teacher, edited composites",
             "edited_agreement_with_teacher", "{:.1%}")]
    value = (lambda r, k: r[k]["agreement"] if k == "teacher_agreement" else r[k])
    table = "\n".join(
        [f"{args.edits} training composites, the map outside the object's box removed; "
         f"held out: {args.composites} composites of held-out photos and cut-outs, and "
         f"{before['teacher_agreement']['images']} held-out photos and cut-outs. Fine-tuning "
         f"with the model's own settings: scope `{cfg.scope}`, {cfg.optimizer} lr {cfg.lr:g}, "
         f"{cfg.steps} steps of {cfg.batch_size}.", "",
         "| measure | before | after |", "|---|---:|---:|"]
        + [f"| {name} | {fmt.format(value(before, k))} | {fmt.format(value(after, k))} |"
           for name, k, fmt in rows])
    env = {"load_average_1_5_15": load, "threads": args.threads, "model": args.model,
           "config": vars(cfg)}
    print(write("photo_finetune", env, [{"before": before, "after": after}],
                f"{args.threads} threads", table))
    return 0


def run(args: argparse.Namespace) -> tuple[FinetuneConfig, dict, dict]:
    model, teacher = create_model(args.model), create_model("efficientnet_lite0")
    photos = collect()
    held_x, held_boxes = composites(photos, args.composites, seed=0)
    edited = edited_composites(model, teacher, photos, args.edits, seed=1)
    before = scores(model, teacher, photos, held_x, held_boxes, edited)
    chosen = {k: v for k, v in (("steps", args.steps), ("lr", args.lr)) if v is not None}
    cfg = tuning_config(model.net, chosen)
    with tempfile.TemporaryDirectory() as tmp:
        train_set = EditedSet(edited, None, model.classes, model.input, share=cfg.edited_share,
                              steps=cfg.steps, counterfactual=cfg.counterfactual)
        out = finetune(checkpoint_dir(args.model), Path(tmp) / "tuned", train_set, train_set,
                       cfg, progress=False)
        after = scores(create_model(str(out)), teacher, photos, held_x, held_boxes, edited)
    return cfg, before, after


if __name__ == "__main__":
    sys.exit(main())
