"""`explain finetune`: fine-tune an ABN on edited attention maps; before/after report."""
from __future__ import annotations

import argparse

from explain.datasets import SYNTHETIC
from explain.finetune import FinetuneConfig
from explain.jobs.finetune import finetune_on_edits

from .common import command_line, device_arg, positive_int

HELP = "fine-tune an ABN on edited attention maps (map loss); writes a checkpoint and a report"
DESCRIPTION = """Loss: L_att + L_per + gamma * ||M(x) - M'(x)||^2, the map term only on
images that have an edit, mixed with the unedited training samples of --data. By default
only the attention and perception branches learn (the feature extractor is frozen, as in
Mitsuhara et al.). Writes OUT/model.safetensors + card.json and OUT/report.{json,md}:
held-out accuracy, mean agreement of M(x) with the edits, per-class changes, before and
after. Edits made with another model, or whose image changed since, are skipped with a
warning."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help=HELP, description=DESCRIPTION,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="ABN checkpoint folder or embedded name (abn)")
    p.add_argument("--edits", required=True, metavar="DIR", help="edit store (explain edit)")
    p.add_argument("--data", help=f"unedited training samples and the held-out set: "
                                  f"{', '.join(SYNTHETIC)} or an ImageFolder directory "
                                  "(default: the data named on the model card)")
    p.add_argument("--unedited", type=positive_int,
                   help="use a random subset of this many unedited samples (default: all)")
    p.add_argument("--gamma", type=float, default=1.0, help="weight of the map loss")
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--lr", type=float, default=0.01, help="peak SGD learning rate (cosine)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--freeze-features", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the feature extractor g(x) fixed (weights and BatchNorm statistics)")
    p.add_argument("--perception", choices=["residual", "mask"], default="residual",
                   help="residual: the paper's g' = (1 + M) g; mask: g' = M g, so removed "
                        "attention blocks a region from the prediction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=device_arg, default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no random shifts and flips (applied to image and map alike)")
    p.add_argument("--out", help="checkpoint folder to write (default: ./<model>-finetuned)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = FinetuneConfig(gamma=args.gamma, epochs=args.epochs, lr=args.lr,
                         batch_size=args.batch_size, freeze_features=args.freeze_features,
                         perception=args.perception, seed=args.seed, device=args.device,
                         augment=args.augment)
    rep, out = finetune_on_edits(args.model, args.edits, cfg, args.data, args.out, args.unedited,
                                 command_line())
    before, after = rep["before"], rep["after"]
    print(f"held-out accuracy {before['accuracy']:.2%} -> {after['accuracy']:.2%}; map agreement "
          f"on edited images {before['map_agreement']:.4f} -> {after['map_agreement']:.4f}")
    print(f"wrote {out} (report.md, report.json)")
    return 0
