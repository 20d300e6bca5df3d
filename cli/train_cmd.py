"""`explain train`: train an architecture on a data set; writes safetensors + model card."""
from __future__ import annotations

import argparse
import json

from explain.atomic import check_writable
from explain.errors import ExplainError

from .common import DEVICE_HELP, command_line, device_arg, positive_int

HELP = "train an (attention) architecture; writes a checkpoint and its model card"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=HELP, description=HELP + ".")
    p.add_argument("--arch", required=True, type=arch_name, help="architecture: <ARCHS>")
    p.add_argument("--data", required=True,
                   help="fashion-mnist, cluttered-fmnist, decoy-fmnist, an ImageFolder "
                        "directory (class sub-folders; train/ + val/ used when present), or "
                        "a folder of feature views written by `explain distil-views`")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--epochs", type=positive_int, default=15, help="passes over the data")
    p.add_argument("--batch-size", type=positive_int, default=128, help="samples a batch")
    p.add_argument("--lr", type=float, default=0.1, help="peak SGD learning rate (cosine schedule)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay")
    p.add_argument("--seed", type=int, default=0, help="initialisation, data order and split seed")
    p.add_argument("--device", type=device_arg, default="auto", help=DEVICE_HELP)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 autocast where the hardware supports it")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (ImageFolders)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's last checkpoint")
    p.add_argument("--max-steps", type=positive_int, help="stop after this many steps")
    p.add_argument("--limit", type=positive_int,
                   help="train on the first N training images only (the test set stays whole)")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no random shifts and flips")
    p.add_argument("--freeze", type=lambda v: [s for s in v.split(",") if s], default=[],
                   help="comma-separated modules kept fixed (no gradient, eval mode): fnmatch "
                        "patterns on module paths (att_layer, 'backbone.*conv*'), or "
                        "'features' for an ABN's feature extractor")
    p.add_argument("--arch-kwargs", type=json.loads, default={},
                   help='JSON overrides of the architecture, e.g. \'{"depths": [2, 2, 2]}\'')
    p.set_defaults(run=run)


def arch_name(value: str) -> str:
    """A registered architecture (asked of the registry, which imports torch, only when
    the option is given)."""
    from explain.models import get_arch
    try:
        return get_arch(value).name
    except ExplainError as e:
        raise argparse.ArgumentTypeError(e.message) from None


def run(args: argparse.Namespace) -> int:
    check_writable(args.out)
    from explain.train import TrainConfig, train
    cfg = TrainConfig(arch=args.arch, data=args.data, out=args.out, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                      seed=args.seed, device=args.device, precision=args.precision,
                      resume=args.resume, workers=args.workers, max_steps=args.max_steps,
                      augment=args.augment, limit=args.limit, freeze=args.freeze,
                      arch_kwargs=args.arch_kwargs, command=command_line())
    train(cfg)
    return 0
