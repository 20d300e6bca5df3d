"""Fine-tune a model on the edits of an edit store (Mitsuhara et al.), with the before/after
report; the model must declare re-scoring and a feature split (every ABN does)."""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from ..atomic import check_writable
from ..datasets import SYNTHETIC
from ..edits import EditStore, model_id
from ..errors import ExplainError
from ..finetune import (EditedSet, FinetuneConfig, align_classes, checkpoint_dir, editable_card,
                        exclude, finetune, limit, load_edited, measure, report, tuning_config,
                        write_report)
from ..registry import create_model
from ..trainsets import load_trainset

log = logging.getLogger(__name__)


def finetune_on_edits(model: str, edits: str, cfg: FinetuneConfig | dict, data: str | None = None,
                      out: str | None = None, unedited: int | None = None, command: str = "",
                      held_out: int | None = None) -> tuple[dict, Path]:
    """Fine-tune the checkpoint (folder or embedded name) `model` on the usable edits in
    `edits`, mixed with `unedited` (default: all) unedited training samples of `data`
    (default: the data named on its card), into `out` (default: ./<model>-finetuned); the
    before/after report scores `held_out` (default: all) held-out images.
    `cfg` as a dict holds the settings chosen; the rest come from the model (`tuning_config`).
    Edits made with other weights, or whose image changed, are skipped with a warning.
    Returns the report (also written as OUT/report.json and report.md) and OUT."""
    init = checkpoint_dir(model)
    editable_card(init)
    net = create_model(str(init))
    if isinstance(cfg, dict):
        cfg = tuning_config(net.net, cfg)
    if cfg.gamma < 0:
        raise ExplainError(f"{cfg.gamma} must not be negative", param="gamma")
    store = EditStore(edits)
    if not store.entries():
        raise ExplainError(f"{store.root} holds no edits (make some with `explain edit`)",
                           param="edits")
    usable, problems = store.usable(model_id(net))
    log.info("loading %d edit(s) from %s", len(usable), store.root)
    edited, more = load_edited(store, net, usable)
    problems += more
    for msg in problems:
        log.warning("%s; skipped", msg)
    data = data or net.card.get("data", "")
    if not (data in SYNTHETIC or Path(data).is_dir()):
        raise ExplainError(f"needed (the model card names {data!r}, which is not a known "
                           f"data set or folder here)", param="data")
    out_dir = Path(out or f"{init.name}-finetuned")
    check_writable(out_dir)
    log.info("loading %s", data)
    base, test = load_trainset(data, seed=cfg.seed, spec=net.input)
    if base.features:
        raise ExplainError(f"{data} holds precomputed features, not images; fine-tuning on "
                           "edits needs images: an image folder (class sub-folders)", param="data")
    used = [e.image for e in usable]
    base = limit(exclude(align_classes(base, net.classes, data), used), unedited, cfg.seed)
    test = limit(exclude(align_classes(test, net.classes, data), used), held_out, cfg.seed)
    if not len(test):
        log.warning("%s has no held-out images apart from the edited ones: the report gives "
                    "the edited images only", data)
    how = f"counterfactual fill {cfg.counterfactual}" if cfg.counterfactual else "no counterfactuals"
    trains = "the map's last convolution only" if cfg.scope == "map" else \
        "features frozen" if cfg.freeze_features else "the whole network"
    log.info("fine-tuning %s on %d edit(s) + %d unedited sample(s) of %s (%s; %s, %s lr %g)",
             net.name, len(edited.y), len(base), data, how, trains, cfg.optimizer, cfg.lr)
    before = measure(net.net, test, edited, desc="held-out, before")
    train_set = EditedSet(edited, base, net.classes, net.input, share=cfg.edited_share,
                          steps=cfg.steps, counterfactual=cfg.counterfactual)
    finetune(init, out_dir, train_set, test, cfg, command)
    after = measure(create_model(str(out_dir)).net, test, edited, desc="held-out, after")
    rep = report(before, after, net.classes, {
        "model": str(init), "edits": str(store.root), "edits_used": len(edited.y),
        "edits_skipped": len(problems), "unedited": len(base), "data": data,
        "config": asdict(cfg), "command": command, "checkpoint": str(out_dir)})
    write_report(out_dir, rep)
    return rep, out_dir
