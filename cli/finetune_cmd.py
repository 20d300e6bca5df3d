"""`explain finetune`: fine-tune an ABN on edited attention maps; before/after report."""
from __future__ import annotations

import argparse

from explain.catalog import SYNTHETIC
from explain.errors import ExplainError
from explain.finetune_config import PAPER, FinetuneConfig

from .common import DEVICE_HELP, command_line, device_arg, positive_int

HELP = "fine-tune an ABN on edited attention maps; writes a checkpoint and a before/after report"
DESCRIPTION = """Teaches an ABN what the edits say. Loss: L_att + L_per + gamma *
||M(x) - M'(x)||^2, the map term on images that have an edit, and by default (measured best
in benchmarks/results/hitl.md) counterfactuals: on each edited image the region whose
attention was removed is refilled with content that carries no label information (another
image's pixels or a random flat value), so that the classification loss itself teaches the
model not to use that region -- the map loss alone moves the map but not the prediction.
Every batch mixes --edited-share edited images with unedited samples of --data; the whole
network learns. --paper runs Mitsuhara et al.'s method as published instead (map loss only,
feature extractor frozen, g' = (1 + M) g). Writes OUT/model.safetensors + card.json and
OUT/report.{json,md}: held-out accuracy, agreement of M(x) with the edits, per-class
changes, before and after. Edits made with another model, or whose image changed since,
are skipped with a warning."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help=HELP, description=DESCRIPTION)
    p.add_argument("--model", required=True, help="ABN checkpoint folder or embedded name (abn)")
    p.add_argument("--edits", required=True, metavar="DIR", help="edit store (explain edit)")
    p.add_argument("--data", help="unedited training samples and the held-out set: "
                                  f"{', '.join(SYNTHETIC)} or an ImageFolder directory "
                                  "(default: the data named on the model card)")
    p.add_argument("--unedited", type=positive_int,
                   help="use a random subset of this many unedited samples (default: all)")
    p.add_argument("--held-out", type=positive_int,
                   help="score the report on a random subset of this many held-out images "
                        "(default: all)")
    p.add_argument("--paper", action="store_true",
                   help="Mitsuhara et al.'s method as published: map loss only, features "
                        "frozen, residual perception (overrides the three options below)")
    p.add_argument("--counterfactual", choices=["mix", "donor", "flat", "off"],
                   default=FinetuneConfig.counterfactual,
                   help="refill removed regions of edited images: with another image's pixels "
                        "(donor), a random flat value (flat), either (mix), or not (off)")
    p.add_argument("--freeze-features", action=argparse.BooleanOptionalAction,
                   default=FinetuneConfig.freeze_features,
                   help="keep the feature extractor g(x) fixed (weights and BatchNorm statistics)")
    p.add_argument("--perception", choices=["residual", "mask"], default="residual",
                   help="residual: the paper's g' = (1 + M) g; mask: g' = M g")
    p.add_argument("--gamma", type=float, default=1.0, help="weight of the map loss")
    p.add_argument("--edited-share", type=float, default=FinetuneConfig.edited_share,
                   help="share of every batch drawn from the edited images")
    p.add_argument("--epochs", type=positive_int, default=FinetuneConfig.epochs,
                   help="passes of --steps batches")
    p.add_argument("--steps", type=positive_int, default=FinetuneConfig.steps,
                   help="batches per epoch")
    p.add_argument("--lr", type=float, default=FinetuneConfig.lr,
                   help="peak SGD learning rate (cosine)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="samples a batch")
    p.add_argument("--seed", type=int, default=0, help="sampling and augmentation seed")
    p.add_argument("--device", type=device_arg, default="auto", help=DEVICE_HELP)
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no random shifts and flips (applied to image and map alike)")
    p.add_argument("--out", help="checkpoint folder to write (default: ./<model>-finetuned)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from explain.jobs.finetune import finetune_on_edits
    if not 0 < args.edited_share <= 1:
        raise ExplainError(f"{args.edited_share} must be in (0, 1]", param="edited_share")
    own = {"freeze_features": args.freeze_features, "perception": args.perception,
           "counterfactual": None if args.counterfactual == "off" else args.counterfactual}
    cfg = FinetuneConfig(gamma=args.gamma, epochs=args.epochs, lr=args.lr,
                         batch_size=args.batch_size, edited_share=args.edited_share,
                         steps=args.steps, seed=args.seed, device=args.device,
                         augment=args.augment, **(PAPER if args.paper else own))
    rep, out = finetune_on_edits(args.model, args.edits, cfg, args.data, args.out, args.unedited,
                                 command_line(), args.held_out)
    before, after = rep["before"], rep["after"]
    print(f"held-out accuracy {before['accuracy']:.2%} -> {after['accuracy']:.2%}; map agreement "
          f"on edited images {before['map_agreement']:.4f} -> {after['map_agreement']:.4f}")
    print(f"wrote {out} (report.md, report.json)")
    return 0
