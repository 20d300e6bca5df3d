"""Capabilities are declared, not sniffed: one reading of --methods for every command, the
renderer picking bars or overlays from the explanation's kind, every ABN (the
EfficientNet-Lite0 one too) accepted by the editor and fine-tuning, non-ABNs refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import tiny_checkpoint
from explain.edits import editable_map
from explain.errors import ExplainError
from explain.finetune import editable_card, feature_modules
from explain.methods import METHODS, Explainer, select
from explain.models import ARCHS, build
from explain.registry import create_model, registry
from explain.render import bars, overlay, tiles


def test_select_reads_names_aliases_and_groups(tiny_abn, tiny_resnet_dir):
    cams = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "hirescam",
            "eigencam", "ablationcam"]
    assert select(tiny_abn) == ["abn", "gradcam"]
    assert select(tiny_abn, "Grad-CAM, abn,gradcam") == ["gradcam", "abn"]
    assert select(tiny_abn, "cam-family") == cams
    assert select(tiny_abn, "native,saliency") == ["abn", "saliency"]
    everything = select(tiny_abn, "all")
    assert everything[0] == "abn" and set(cams) <= set(everything)
    assert not {"ran", "se", "bayes_abn"} & set(everything)
    plain = create_model(str(tiny_resnet_dir))
    assert select(plain) == ["gradcam"] and select(plain, "native") == []
    attention = [n for n, cls in METHODS.items() if cls.family == "attention"]
    assert attention == ["attention", "rollout", "grad_attention"]
    assert "abn" not in select(plain, "all")
    assert len(select(plain, "all")) == len(METHODS) - 6 - len(attention)
    for spec, message in ((" , ", "empty list"), ("gradkam", "unknown method 'gradkam'"),
                          ("gradcam,abn", "has no native 'abn' map")):
        with pytest.raises(ExplainError, match=message) as err:
            select(plain, spec)
        assert err.value.param in ("methods", "method")


def test_renderer_picks_bars_for_vectors_and_overlays_for_maps(tmp_path):
    se = create_model(str(tiny_checkpoint(tmp_path / "se", arch="se_resnet", reduction=4)))
    x = torch.randn(2, 1, 28, 28)
    views = np.zeros((2, 28, 28, 3), np.uint8)
    vector = Explainer(se, "se")(x)
    spatial = Explainer(se, "gradcam")(x)
    assert vector.kind == "vector" and vector.raw.ndim == 2 and spatial.kind == "spatial"
    assert np.array_equal(tiles(vector, views, 32), bars(vector.raw, 32))
    assert np.array_equal(tiles(spatial, views, 32), overlay(views, spatial.maps, size=32))


def test_every_abn_declares_editing_and_a_feature_split(tmp_path):
    editable = sorted(n for n, a in ARCHS.items() if a.caps.editable)
    assert editable == ["abn_efficientnet_lite0", "abn_resnet", "bayes_abn_resnet"]
    net = build("abn_efficientnet_lite0", {"num_classes": 4, "in_channels": 3})
    frozen = {id(p) for m in feature_modules(net) for p in m.parameters()}
    assert frozen and len(frozen) < len(list(net.parameters()))
    assert not frozen & {id(p) for p in net.att_conv.parameters()}  # the head learns
    with torch.no_grad():  # re-scoring with a map: an all-zero map changes the answer
        x = torch.randn(1, 3, 224, 224)
        assert not torch.equal(net.eval()(x), net(x, att=torch.zeros(1, 1, 14, 14)))
    card = tmp_path / "effnet" / "card.json"
    card.parent.mkdir()
    card.write_text(json.dumps({"arch": "abn_efficientnet_lite0"}))
    assert editable_card(card.parent)["arch"] == "abn_efficientnet_lite0"  # fine-tunable now


def test_models_without_an_editable_map_are_refused(tiny_abn, tiny_resnet_dir):
    assert editable_map(tiny_abn) == "abn"
    with pytest.raises(ExplainError, match="not an Attention Branch Network") as err:
        editable_map(create_model(str(tiny_resnet_dir)))
    assert err.value.param == "model"
    with pytest.raises(ExplainError, match="is not an ABN"):
        editable_card(tiny_resnet_dir)


def test_the_registry_is_built_once():
    first, second = registry(), registry()
    assert first is not second and all(first[k] is second[k] for k in first)
