"""Domain honesty: an image outside a model's domain is explained with a warning that names
the domain (stderr, --json, the gallery), with the geometry stated; one inside gets none."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import FMNIST_SPEC, SAMPLES

from explain.catalog import zoo_cards
from explain.cli.main import main
from explain.domain import check, describe
from explain.errors import ImageError
from explain.preprocess import IMAGENET
from explain.registry import create_model

CAT, BAG = SAMPLES / "chelsea.jpg", SAMPLES / "fmnist" / "bag.png"


def photo(w: int, h: int, colour: bool = True) -> np.ndarray:
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return rgb if colour else np.repeat(rgb[..., :1], 3, axis=2)


def test_geometry_is_stated_for_each_kind_of_misfit():
    fmnist = check(FMNIST_SPEC, photo(451, 300))
    assert fmnist == ["451x300 px, resized to 28x28 (aspect ratio 1.5:1 squeezed to 1:1)",
                      "a colour image, seen as 28x28 grayscale"]
    assert check(FMNIST_SPEC, photo(28, 28, colour=False)) == []
    assert check(IMAGENET, photo(451, 300)) == []
    assert check(IMAGENET, photo(64, 48)) == ["64x48 px, enlarged 5.3x to fill the 224x224 input"]
    assert check(IMAGENET, photo(2000, 500)) == [
        "a 2000x500 panorama: the model sees only its centre 438x438 px (19% of it)"]
    assert check(IMAGENET, photo(400, 300, colour=False)) == [
        "a grayscale image; the model was trained on colour"]
    assert check(IMAGENET, photo(300, 300, colour=False), "I;16")[0] == \
        "a I;16 (16-bit) image, scaled to 8 bits"
    # a file whose mode holds no colour is grayscale whatever its pixels (not looked at)
    assert check(FMNIST_SPEC, photo(28, 28), "L") == []
    assert check(IMAGENET, photo(400, 300), "LA") == [
        "a grayscale image; the model was trained on colour"]
    assert check(IMAGENET, photo(300, 300), "CMYK") == ["a CMYK image, converted to RGB"]
    with pytest.raises(ImageError, match=r"^strip.png: 6000x200 px \(aspect ratio 30:1\)"):
        check(IMAGENET, photo(6000, 200), source="strip.png")


def test_every_zoo_card_states_its_domain():
    for name, card in zoo_cards().items():
        d = card["domain"]
        assert (d["channels"], d["input_size"], d["classes"]) == (
            card["input"]["channels"], card["input"]["size"], len(card["classes"])), name
        assert d["data"] and d["about"], name
    model = create_model("abn_fmnist")
    assert model.card["domain"]["data"] == "Fashion-MNIST"
    assert describe(model).startswith("Fashion-MNIST: 28x28 grayscale images, 10 classes "
                                      "(T-shirt/top, Trouser, Pullover, ...)")
    assert describe(create_model("efficientnet_lite0")).startswith(
        "ImageNet-1k: 224x224 colour images, 1000 classes (tench, goldfish")


def test_photo_into_a_fashion_mnist_model_warns_on_stderr_and_in_json(tmp_path, capsys):
    code = main([str(CAT), str(BAG), "--model", "abn_fmnist", "--json", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    cat, bag = (json.loads(line) for line in out.splitlines())
    assert code == 0
    assert len(cat["warnings"]) == 1 and bag["warnings"] == []
    warning = cat["warnings"][0]
    assert warning.startswith("outside the domain of abn_resnet20_fmnist (Fashion-MNIST: "
                              "28x28 grayscale images, 10 classes")
    assert "451x300 px, resized to 28x28" in warning and "one of these 10 classes" in warning
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert lines == [f"warning: {CAT}: {warning}"]
    # the panel shows the original beside the 28x28 grayscale view the model saw:
    # original | model's view | abn | gradcam, where the item that fits has input | abn | gradcam
    panel, fits = (np.asarray(Image.open(r["panel"])) for r in (cat, bag))
    side = (fits.shape[1] - 2 * 4) // 3
    assert panel.shape[1] == 4 * side + 3 * 4
    tile_rows = (fits[:, :side] < 250).all(axis=2).mean(axis=1) > 0.9  # the item: black ground
    assert tile_rows.sum() == side

    def colour_rows(k: int) -> int:  # rows of the tiles with colour in tile column k
        band = panel[tile_rows, k * (side + 4):k * (side + 4) + side].astype(int)
        return int((np.ptp(band, axis=2).max(axis=1) > 0).sum())
    assert colour_rows(0) > side // 2  # the colour photo
    assert colour_rows(1) == 0  # gray: what a one-channel model sees


def test_photo_in_the_imagenet_domain_gets_no_warning(tmp_path, capsys):
    assert main([str(CAT), "--json", "--out", str(tmp_path), "--methods", "gradcam"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["warnings"] == [] and "warning" not in err


def test_gallery_marks_the_images_outside_the_domain(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for f in (CAT, BAG):
        (src / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "gallery"
    assert main(["gallery", str(src), "--model", "abn_fmnist", "--out", str(out),
                 "--no-progress", "--workers", "0"]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 of 2 images are outside the domain of abn_fmnist (Fashion-MNIST" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["domain"].startswith("Fashion-MNIST: 28x28 grayscale images")
    rows = {r["name"]: r for r in manifest["rows"]}
    assert rows["bag.png"]["outside"] == []
    assert rows["chelsea.jpg"]["outside"][0].startswith("451x300 px, resized to 28x28")
    page = (out / "index.html").read_text()
    assert 'id="domain"' in page and "are outside the domain" in page
    assert "outside the model's domain: " in page  # each such row says why
