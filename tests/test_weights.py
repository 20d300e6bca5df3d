"""Weights load only through safetensors or torch.load(weights_only=True)."""
from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from explain.cli.main import main

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
    with pytest.raises(WeightsError, match="refused to load"), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_state_dict(p)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()
    assert [str(w.message) for w in caught] == []  # torch's "Detected pickle protocol 4"


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


# ---- weights that are not real numbers (the zoo ABN's, spoilt) ----

ZOO_ABN = Path(__file__).resolve().parents[1] / "explain" / "zoo" / "abn_resnet20_fmnist" / "model.safetensors"
SHOE = Path(__file__).resolve().parents[1] / "explain" / "samples" / "fmnist" / "sneaker.png"
SPOIL = {"int64": lambda k, v: v.to(torch.int64), "bool": lambda k, v: v.bool(),
         "nan": lambda k, v: v * float("nan"),
         "one_inf": lambda k, v: v.index_fill(0, torch.tensor([3]), float("inf")) if k == "fc.bias" else v}


@pytest.mark.parametrize("how, suffix, first_bad", [
    ("int64", ".safetensors", "conv1.weight is int64"), ("bool", ".pth", "conv1.weight is bool"),
    ("nan", ".safetensors", "conv1.weight holds NaN"), ("one_inf", ".pth", "fc.bias holds NaN or infinite")])
def test_weights_that_are_not_real_numbers_are_refused(tmp_path, capsys, how, suffix, first_bad):
    sd = {k: SPOIL[how](k, v) if v.is_floating_point() else v for k, v in load_file(ZOO_ABN).items()}
    path = tmp_path / f"spoilt{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": sd}, path)
    else:
        save_file(sd, path)
    capsys.readouterr()
    code = main([str(SHOE), "--model", "abn_fmnist", "--weights", str(path), "--json",
                 "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and not (tmp_path / "out").exists()
    assert len(err.splitlines()) == 1 and str(path) in err and first_bad in err
    with pytest.raises(WeightsError, match="refused"):
        create_model("abn_fmnist", weights=str(path))


def nan_net() -> torch.nn.Module:
    """A model factory (package.module:function) whose outputs are NaN."""
    class NaNNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 1000)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3))) * float("nan")
    return NaNNet()


def test_json_output_never_holds_nan(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    capsys.readouterr()
    code = main([str(SHOE), "--model", "test_weights:nan_net", "--json", "--methods", "gradcam",
                 "--out", str(tmp_path)])
    out, _ = capsys.readouterr()

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")
    record = json.loads(out, parse_constant=refuse)
    assert code == 0 and record["topk"][0]["probability"] is None
    assert len(record["methods"]["gradcam"]["peak"]) == 2
