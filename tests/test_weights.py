"""Weights load only through safetensors or torch.load(weights_only=True)."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from explain.errors import WeightsError
from explain.models.resnet import ResNet
from explain.registry import create_model
from explain.weights import load_weights, read_state_dict


class Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.pth"
    with open(p, "wb") as f:
        pickle.dump({"state_dict": Boom()}, f)
    with pytest.raises(WeightsError, match="refused to load"):
        read_state_dict(p)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_official_style_dict_is_unwrapped_and_prefix_stripped(tmp_path):
    net = ResNet(depths=(1, 1, 1), widths=(4, 8, 8), in_channels=1)
    sd = {f"module.{k}": v for k, v in net.state_dict().items() if "num_batches" not in k}
    p = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "state_dict": sd, "best_acc": 0.9}, p)
    other = ResNet(depths=(1, 1, 1), widths=(4, 8, 8), in_channels=1)
    load_weights(other, read_state_dict(p), str(p))
    assert torch.equal(other.fc.weight, net.fc.weight)


def test_wrong_architecture_names_the_keys(tmp_path):
    p = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ResNet(depths=(1, 1, 1), widths=(4, 8, 8)).state_dict().items()}, p)
    with pytest.raises(WeightsError) as e:
        load_weights(ResNet(depths=(1, 1), widths=(4, 8)), read_state_dict(p), str(p))
    msg = str(e.value)
    assert "unexpected keys: layer3." in msg and str(p) in msg


def test_weights_for_other_arch_through_registry(tmp_path):
    p = tmp_path / "r.safetensors"
    save_file({k: v.contiguous() for k, v in ResNet(depths=(1, 1, 1), widths=(4, 8, 8)).state_dict().items()}, p)
    with pytest.raises(WeightsError, match="weights do not fit"):
        create_model("torchvision:resnet18", weights=str(p))
