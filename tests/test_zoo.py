"""Every checkpoint committed to explain/zoo loads through the registry, classifies the bundled
Fashion-MNIST samples as its card's accuracy promises, and gives each of its native maps
(and its attention maps)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from conftest import SAMPLES
from explain.methods import select
from explain.pipeline import explain_batch, prepare
from explain.registry import ALIASES, create_model, registry

ZOO = sorted(n for n, e in registry().items() if e.card.get("data") == "fashion-mnist")
FMNIST = sorted((SAMPLES / "fmnist").glob("*.png"))


def test_every_alias_names_a_registered_model():
    assert set(ALIASES.values()) <= set(registry())


def test_the_catalog_lists_the_native_maps_the_architectures_declare():
    """`explain models` reads native maps from the cards (no torch); they must say what the
    architecture registry says, for every zoo card and official release."""
    from explain.catalog import list_models
    from explain.models import get_arch
    rows = list_models()
    assert [r["name"] for r in rows] == list(registry())
    for r in rows:
        card = registry()[r["name"]].card
        assert r["native_maps"] == (get_arch(r["arch"]).map_names if r["arch"] else [])
        assert r["arch"] is None or "native_maps" in card, f"{r['name']}: card without native_maps"


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_classifies_the_samples_and_gives_its_maps(name):
    model = create_model(name)
    batch, errors = prepare(model, FMNIST)
    assert not errors
    with torch.no_grad():
        pred = model.net(batch.x).argmax(1)
    index = {re.sub("[^a-z]+", "_", c.lower()): i for i, c in enumerate(model.classes)}
    truth = [index[Path(p).stem] for p in batch.paths]  # samples are named after their class
    assert (pred == torch.tensor(truth)).sum() >= 8, f"{name}: {pred.tolist()} vs {truth}"
    own = [m for m in select(model) if m != "gradcam"]  # native maps, attention
    for method, expl in explain_batch(model, batch.x, own, all_maps=True).items():
        assert torch.isfinite(expl.maps).all(), method
        assert expl.maps.shape[0] == len(FMNIST), method
