"""ImageNet preprocessing equals the reference (torchvision's Resize(256) + CenterCrop(224) on a
PIL image, as in the official evaluation scripts), and model-input pixels map back exactly to
the original image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from conftest import FMNIST_SPEC, SAMPLES

from explain.preprocess import IMAGENET

SKIMAGE_DATA = Path(pytest.importorskip("skimage").__file__).parent / "data"
PHOTOS = sorted(SAMPLES.glob("*.jpg")) + [SKIMAGE_DATA / n for n in (
    "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "astronaut.png",
    "horse.png", "coins.png", "hubble_deep_field.jpg")]


def rgb_of(path: Path, portrait: bool = False) -> np.ndarray:
    rgb = np.array(Image.open(path).convert("RGB"))
    return np.ascontiguousarray(rgb.transpose(1, 0, 2)) if portrait else rgb


def reference_view(rgb: np.ndarray) -> np.ndarray:
    return np.array(T.Compose([T.Resize(256), T.CenterCrop(224)])(Image.fromarray(rgb)))


@pytest.mark.parametrize("portrait", [False, True], ids=["landscape", "portrait"])
@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_view_and_tensor_match_torchvision(path, portrait):
    rgb = rgb_of(path, portrait)
    view, _ = IMAGENET.view(rgb)
    ref = reference_view(rgb)
    assert view.shape == ref.shape == (224, 224, 3)
    assert np.abs(view.astype(int) - ref.astype(int)).max() <= 1
    x, _, _ = IMAGENET(rgb)
    ref_x = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                       T.Normalize(IMAGENET.mean, IMAGENET.std)])(Image.fromarray(rgb))
    assert torch.allclose(x, ref_x, atol=1.01 / 255 / min(IMAGENET.std))


@pytest.mark.parametrize("width, height", [(451, 300), (300, 451), (640, 427), (257, 1000),
                                           (100, 150), (256, 256), (999, 257)])
def test_input_pixels_map_back_to_the_original(width, height):
    """Each model-input pixel's centre, through the reference's two steps written out here
    (shorter side to 256, longer side truncated; crop offset rounded; pixel centres scale by
    original/resized), lands in the original pixel that `to_original` names."""
    short, long = sorted((width, height))
    new_long = int(256 * long / short)
    rw, rh = (256, new_long) if width <= height else (new_long, 256)
    left, top = int(round((rw - 224) / 2.0)), int(round((rh - 224) / 2.0))
    _, geometry = IMAGENET.view(np.zeros((height, width, 3), np.uint8))
    for x in (0, 1, 57, 111, 112, 200, 223):
        for y in (0, 13, 112, 222, 223):
            expected = (int((left + x + 0.5) * width / rw), int((top + y + 0.5) * height / rh))
            assert geometry.to_original(x, y, (224, 224)) == expected


def test_a_bright_dot_is_found_where_it_was_drawn():
    rgb = np.zeros((427, 640, 3), np.uint8)
    rgb[300:303, 450:453] = 255
    view, geometry = IMAGENET.view(rgb)
    y, x = np.unravel_index(view[..., 0].argmax(), view.shape[:2])
    ox, oy = geometry.to_original(int(x), int(y), (224, 224))
    assert abs(ox - 451) <= 1 and abs(oy - 301) <= 1


@pytest.mark.parametrize("spec", ["imagenet", "fmnist"])
def test_a_stack_of_views_normalises_as_each_view_does(spec):
    """The gallery normalises a batch of views in one call (explain.gallery.dataset)."""
    spec = IMAGENET if spec == "imagenet" else FMNIST_SPEC
    views = np.random.default_rng(0).integers(0, 256, (3, *spec.size, 3), dtype=np.uint8)
    batch = spec.normalise(views)
    assert batch.shape == (3, spec.channels, *spec.size)
    for view, x in zip(views, batch):
        assert torch.equal(spec.normalise(view), x)
