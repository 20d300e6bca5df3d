"""`explain finetune`: fine-tune an ABN on edited attention maps; before/after report."""
from __future__ import annotations

import argparse

from explain.catalog import SYNTHETIC
from explain.errors import ExplainError
from explain.finetune_config import MAP_ONLY, PAPER, FinetuneConfig

from .common import DEVICE_HELP, command_line, device_arg, positive_int

F = FinetuneConfig
TUNABLE = ("counterfactual", "freeze_features", "perception", "scope", "optimizer", "gamma",
           "edited_share", "epochs", "steps", "lr", "batch_size", "augment")
HELP = "fine-tune an ABN on edited attention maps; writes a checkpoint and a before/after report"
DESCRIPTION = """Teaches an ABN what the edits say. Loss: L_att + L_per + gamma *
||M(x) - M'(x)||^2, the map term on images that have an edit, and by default (measured best
in benchmarks/results/hitl.md) counterfactuals: on each edited image the region whose
attention was removed is refilled with content that carries no label information (another
image's pixels or a random flat value), so that the classification loss itself teaches the
model not to use that region -- the map loss alone moves the map but not the prediction.
Every batch mixes --edited-share edited images with unedited samples of --data; the whole
network learns. Defaults marked * are a model's own where it brings one: the ImageNet ABN
(abn), whose perception branch is the pretrained network, trains only its map's last
convolution (%s). --paper runs Mitsuhara et al.'s method as published instead (map loss only,
feature extractor frozen, g' = (1 + M) g). Writes OUT/model.safetensors + card.json and
OUT/report.{json,md}: held-out accuracy, agreement of M(x) with the edits, per-class
changes, before and after. Edits made with another model, or whose image changed since,
are skipped with a warning."""


def flags(settings: dict) -> str:
    """Settings as the command-line flags that choose them."""
    def flag(k: str, v: object) -> str:
        name = k.replace("_", "-")
        if isinstance(v, bool):
            return f"--{'' if v else 'no-'}{name}"
        return f"--{name} {'off' if v is None else v}"
    return " ".join(flag(k, v) for k, v in settings.items())


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help=HELP, description=DESCRIPTION % flags(MAP_ONLY))
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
                   help="refill removed regions of edited images: with another image's pixels "
                        f"(donor), a random flat value (flat), either (mix), or not (off) "
                        f"(default: {F.counterfactual}*)")
    p.add_argument("--freeze-features", action=argparse.BooleanOptionalAction,
                   help="keep the feature extractor g(x) fixed (weights and BatchNorm "
                        "statistics) (default: no)")
    p.add_argument("--perception", choices=["residual", "mask"],
                   help="residual: the paper's g' = (1 + M) g; mask: g' = M g "
                        f"(default: {F.perception})")
    p.add_argument("--scope", choices=["network", "map"],
                   help="network: train what --freeze-features leaves; map: only the map's "
                        f"last convolution (default: {F.scope}*)")
    p.add_argument("--optimizer", choices=["sgd", "adam"],
                   help=f"SGD (momentum 0.9, Nesterov) or Adam (default: {F.optimizer}*)")
    p.add_argument("--gamma", type=float, help=f"weight of the map loss (default: {F.gamma})")
    p.add_argument("--edited-share", type=float,
                   help="share of every batch drawn from the edited images "
                        f"(default: {F.edited_share}*)")
    p.add_argument("--epochs", type=positive_int,
                   help=f"passes of --steps batches (default: {F.epochs}*)")
    p.add_argument("--steps", type=positive_int,
                   help=f"batches per epoch (default: {F.steps}*)")
    p.add_argument("--lr", type=float,
                   help=f"peak learning rate, cosine schedule (default: {F.lr}*)")
    p.add_argument("--batch-size", type=positive_int,
                   help=f"samples a batch (default: {F.batch_size}*)")
    p.add_argument("--seed", type=int, default=0, help="sampling and augmentation seed")
    p.add_argument("--device", type=device_arg, default="auto", help=DEVICE_HELP)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction,
                   help="random shifts and flips, of image and map alike (default: yes*)")
    p.add_argument("--out", help="checkpoint folder to write (default: ./<model>-finetuned)")
    p.set_defaults(run=run)


def chosen(args: argparse.Namespace) -> dict:
    """The settings given on the command line; the rest are the model's or FinetuneConfig's."""
    if args.edited_share is not None and not 0 < args.edited_share <= 1:
        raise ExplainError(f"{args.edited_share} must be in (0, 1]", param="edited_share")
    given = {k: getattr(args, k) for k in TUNABLE if getattr(args, k) is not None}
    if given.get("counterfactual") == "off":
        given["counterfactual"] = None
    fixed = {"seed": args.seed, "device": args.device}
    return {**given, **(PAPER if args.paper else {}), **fixed}


def run(args: argparse.Namespace) -> int:
    from explain.jobs.finetune import finetune_on_edits
    rep, out = finetune_on_edits(args.model, args.edits, chosen(args), args.data, args.out,
                                 args.unedited, command_line(), args.held_out)
    before, after = rep["before"], rep["after"]
    held = (f"held-out accuracy {before['accuracy']:.2%} -> {after['accuracy']:.2%}"
            if before["test_images"] else "no held-out images")
    print(f"{held}; map agreement on edited images {before['map_agreement']:.4f} -> "
          f"{after['map_agreement']:.4f}")
    print(f"wrote {out} (report.md, report.json)")
    return 0
