"""`explain eval` end to end on tiny models: outputs, ground truth from each kind of data,
and bad input (boxes outside the image, unreadable images, malformed box files, a model
whose prediction is constant)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from explain.cli.main import main
from explain.metrics import Report, evaluate
from explain.metrics.report import summary, table_rows, text_table, write_outputs
from explain.metrics.sources import array_source
from explain.datasets import ArrayData, FMNIST_CLASSES
from explain.preprocess import InputSpec
from explain.registry import Model


def strict_json(path: Path) -> dict:
    """Parse JSON, refusing NaN/Infinity: no silent NaN may reach a results file."""
    def refuse(token: str):
        raise AssertionError(f"{path}: {token} in JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["eval", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cluttered_fmnist_writes_table_json_csv_and_plots(tiny_abn_dir, tmp_path, capsys):
    out = tmp_path / "ev"
    code, stdout, stderr = run(capsys, "--model", str(tiny_abn_dir), "--methods", "abn,gradcam",
                               "--data", "cluttered-fmnist", "--limit", "12", "--steps", "4",
                               "--sanity-images", "3", "--out", str(out))
    assert code == 0, stderr
    assert "pointing game" in stdout and "insertion AUC" in stdout and "abn" in stdout
    assert "fed at their own size" in stdout  # a 28 px model on 64 px canvases
    report = strict_json(out / "metrics.json")
    assert report["images"] == 12 and report["methods"] == ["abn", "gradcam"]
    for m in ("abn", "gradcam"):
        pg = report["metrics"][m]["pointing_game"]
        assert pg["n"] == 12 and 0 <= pg["low"] <= pg["mean"] <= pg["high"] <= 1
        assert len(report["curves"][m]["deletion"]) == 5
        assert report["sanity"][m]["units"][0] == "fc"
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert {(r["method"], r["metric"]) for r in rows} >= {("abn", "deletion_auc"),
                                                         ("gradcam", "sanity_spearman")}
    for name in ("curves.png", "sanity.png"):
        assert Image.open(out / name).size[0] > 200


def test_decoy_fmnist_reports_the_wrong_reason_score(tiny_abn_dir, tmp_path, capsys):
    out = tmp_path / "decoy"
    code, stdout, _ = run(capsys, "--model", str(tiny_abn_dir), "--data", "decoy-fmnist",
                          "--limit", "8", "--steps", "2", "--sanity-images", "0", "--json",
                          "--out", str(out))
    assert code == 0
    report = json.loads(stdout)
    wr = report["metrics"]["abn"]["wrong_reason"]
    assert wr["n"] + wr["skipped"] == 8 and "pointing_game" not in report["metrics"]["abn"]
    assert not (out / "sanity.png").exists()


@pytest.fixture
def boxed_folder(tmp_path, fmnist_pngs) -> tuple[Path, Path]:
    """Six images of two classes, one corrupt file, boxes in JSON: one box outside the image."""
    root = tmp_path / "imgs"
    for cls in ("sneaker", "bag"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.png").write_bytes((fmnist_pngs / cls / f"{cls}_{i}.png").read_bytes())
    (root / "bag" / "broken.png").write_bytes(b"not a png")
    boxes = {f"sneaker/{i}.png": [4, 4, 24, 24] for i in range(3)}
    boxes["bag/0.png"] = [[2, 2, 10, 10], [12, 12, 26, 26]]
    boxes["bag/1.png"] = [100, 100, 140, 140]  # entirely outside the 28x28 image
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(boxes))
    return root, path


def test_image_folder_with_boxes_skips_and_counts(tiny_abn_dir, boxed_folder, tmp_path, capsys):
    root, boxes = boxed_folder
    code, stdout, stderr = run(capsys, "--model", str(tiny_abn_dir), "--data", str(root),
                               "--boxes", str(boxes), "--steps", "2", "--sanity-images", "2",
                               "--out", str(tmp_path / "o"))
    assert code == 1                                   # the broken image failed ...
    assert "broken.png" in stderr and "Traceback" not in stderr
    assert "1 of 7 image(s) failed" in stderr
    report = strict_json(tmp_path / "o" / "metrics.json")   # ... the rest was measured
    assert report["images"] == 6 and report["failed"][0]["file"].endswith("broken.png")
    pg = report["metrics"]["abn"]["pointing_game"]
    assert pg["n"] == 4 and pg["skipped"] == 2          # outside box + bag/2 without a box
    assert report["accuracy"] is not None               # labels from the class folders


def test_csv_boxes_and_malformed_rows(tiny_abn_dir, boxed_folder, tmp_path, capsys):
    root, _ = boxed_folder
    good = tmp_path / "boxes.csv"
    good.write_text("image,x0,y0,x1,y1\nsneaker/0.png,4,4,24,24\n")
    code, _, stderr = run(capsys, "--model", str(tiny_abn_dir), "--data", str(root / "sneaker"),
                          "--boxes", str(good), "--steps", "2", "--sanity-images", "0",
                          "--out", str(tmp_path / "c"))
    assert code == 0, stderr
    # paths are relative to --data: sneaker/0.png names no image under root/sneaker
    assert "name no image" in strict_json(tmp_path / "c" / "metrics.json")["notes"][0]
    bad = tmp_path / "bad.csv"
    bad.write_text("sneaker/0.png,4,4,24\n")
    code, _, stderr = run(capsys, "--model", str(tiny_abn_dir), "--data", str(root),
                          "--boxes", str(bad), "--out", str(tmp_path / "b"))
    assert code == 1
    assert stderr.strip().splitlines()[-1] == (
        f"error: --boxes: {bad} line 1: expected 4 numbers x0, y0, x1, y1, got 3")


@pytest.mark.parametrize("argv, message", [
    (["--methods", "ran"], "no native 'ran' map"),
    (["--methods", "nosuch"], "unknown method"),
    (["--boxes", "b.json"], "carries its own ground truth"),
    (["--limit", "-1"], None),
])
def test_bad_arguments_get_one_line(tiny_abn_dir, capsys, argv, message):
    try:
        code = main(["eval", "--model", str(tiny_abn_dir), "--data", "decoy-fmnist", *argv])
    except SystemExit as e:  # argparse rejects the value itself
        code = e.code
    err = capsys.readouterr().err
    assert code in (1, 2) and "Traceback" not in err
    if message:
        assert message in err and len(err.strip().splitlines()) == 1


class ConstantNet(nn.Module):
    """Convolutional, but its prediction ignores the input: the logits are a bias."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)) * 0)


def test_constant_prediction_model_gives_no_nan(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (6, 20, 20), generator=g, dtype=torch.uint8).numpy()
    boxes = torch.tensor([[2, 2, 10, 10]] * 5 + [[30, 30, 40, 40]]).numpy()
    data = ArrayData(images, torch.zeros(6, dtype=torch.long).numpy(), FMNIST_CLASSES[:3],
                     "boxes", boxes=boxes)
    spec = InputSpec(size=(20, 20), channels=1, mean=(0.5,), std=(0.5,))
    model = Model("constant", ConstantNet().eval(), spec, FMNIST_CLASSES[:3], cam_layer="features")
    report = evaluate(model, array_source(data, spec, batch_size=4), ["gradcam", "saliency"],
                      steps=4, sanity_images=2, progress=False)
    assert report.map_counts["gradcam"]["constant_maps"] == 6   # zero gradients: no map
    m = report.metrics["gradcam"]
    assert m["pointing_game"].mean == 0 and m["pointing_game"].skipped == 1  # box outside
    assert m["average_drop"].mean == 0 and m["increase_in_confidence"].mean == 0
    assert m["sanity_spearman"].mean is None and m["sanity_spearman"].skipped == 2
    files = write_outputs(report, tmp_path)
    strict_json(files["json"])
    text = summary(report) + text_table(*table_rows(report))
    assert "nan" not in text.lower() and "n/a (2 skipped)" in text
    # metrics.json reads back as the same report (benchmarks/results.py --reuse)
    back = Report.from_dict(json.loads(files["json"].read_text()))
    assert back.to_dict() == json.loads(files["json"].read_text())
    assert summary(back) + text_table(*table_rows(back)) == text


def test_ground_truth_of_each_synthetic_kind():
    images = torch.zeros(3, 16, 16, dtype=torch.uint8).numpy()
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[:, 4:6, 4:9] = True
    rect = masks.clone()
    masks[:, 5, 8] = False                       # the object's pixels: not the whole box
    boxes = torch.tensor([[4, 4, 9, 6]] * 3).numpy()
    spec = InputSpec(size=(16, 16), channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    data = ArrayData(images, torch.zeros(3, dtype=torch.long).numpy(), ["a"], "cluttered-fmnist",
                     boxes=boxes, masks=masks.numpy())
    by_box = next(array_source(data, spec, gt="box").batches())
    by_mask = next(array_source(data, spec, gt="mask").batches())
    assert by_box.x.shape == (3, 3, 16, 16) and by_box.x.min() == -1   # black, normalised
    assert torch.equal(by_box.regions, rect) and torch.equal(by_mask.regions, masks)
    data.name = "decoy-fmnist"
    decoy = next(array_source(data, spec).batches())
    assert decoy.regions is None and torch.equal(decoy.decoys, masks)
