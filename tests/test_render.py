"""Pictures a person reads: the map over the whole photo where the model's crop was, the rest
of the photo marked as unseen; labels, legends and panels in rows."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SAMPLES
from explain.explanation import Explanation
from explain.jobs.images import ImageOptions, explain_images
from explain.preprocess import IMAGENET
from explain.registry import create_model
from explain.render import WASH, bars, colormap_lut, legend, panel, picture, render, whole_image

GREY = 100


def wide_photo() -> np.ndarray:
    return np.full((300, 600, 3), GREY, np.uint8)


def test_whole_image_overlay_puts_the_map_where_the_crop_was_and_marks_the_margins():
    image = wide_photo()
    _, geometry = IMAGENET.view(image)  # Resize(256) + CenterCrop(224) of a 2:1 photo
    left, top, right, bottom = geometry.box
    assert (left, right) == pytest.approx((168.75, 431.25)) and top == pytest.approx(18.75)
    m = torch.zeros(224, 224)
    m[:, :112] = 1.0  # the left half of what the model saw
    out = whole_image(image, m, geometry, alpha=0.5)
    assert out.shape == image.shape  # the photo's own resolution
    lut = (colormap_lut("jet").numpy() * 255).round()
    hot, cold = (GREY + lut[255]) / 2, (GREY + lut[0]) / 2
    washed = GREY * (1 - WASH) + 160 * WASH
    assert np.allclose(out[150, 20], washed, atol=2) and np.allclose(out[150, 580], washed, atol=2)
    assert np.allclose(out[150, 200], hot, atol=2)     # inside the box, left of its centre
    assert np.allclose(out[150, 400], cold, atol=2)    # inside, right of it
    row = out[150, 180:420].astype(int)
    edge = 180 + int(np.argmax(np.abs(np.diff(row[:, 0]))))
    assert abs(edge - (left + right) / 2) <= 2         # the map's edge at the crop's centre
    assert (out[150, 169] == 255).all() or (out[150, 170] == 255).all()  # the box is outlined


def test_a_photo_the_model_saw_whole_has_no_unseen_margin():
    image = wide_photo()
    m = torch.linspace(0, 1, 28)[None].repeat(28, 1)
    out = picture(Explanation(m[None, None], m[None, None], torch.zeros(1, 2), torch.zeros(1),
                              "x"), 0, image)
    assert out.shape == image.shape
    lut = (colormap_lut("jet").numpy() * 255).round()
    assert np.allclose(out[150, 0], (GREY + lut[0]) / 2, atol=3)
    assert np.allclose(out[150, -1], (GREY + lut[255]) / 2, atol=3)


def test_render_labels_the_picture_and_adds_a_legend():
    m = torch.rand(1, 1, 224, 224)
    e = Explanation(m, m, torch.zeros(1, 5), torch.tensor([3]), "gradcam")
    pic = render(e, wide_photo(), IMAGENET.view(wide_photo())[1])
    assert pic.size[0] == 600 and pic.size[1] > 300 + legend(600).shape[0]
    top = np.asarray(pic)[:12]
    assert (top < 128).any()  # the title's text


def test_crop_view_and_small_images_are_scaled_up_to_read():
    m = torch.rand(1, 1, 28, 28)
    e = Explanation(m, m, torch.zeros(1, 10), torch.tensor([0]), "abn")
    assert picture(e, 0, np.zeros((28, 28, 3), np.uint8), view="crop").shape == (224, 224, 3)
    assert picture(e, 0, np.zeros((28, 28, 3), np.uint8)).shape == (224, 224, 3)


def test_panels_wrap_into_rows():
    tile = np.zeros((100, 150, 3), np.uint8)
    one_row = panel([tile] * 4, list("abcd"), columns=4)
    three_rows = panel([tile] * 9, list("abcdefghi"), columns=4)
    assert three_rows.shape[1] == one_row.shape[1] == 4 * 150 + 3 * 4
    assert three_rows.shape[0] > 3 * 100 > one_row.shape[0]


def test_bar_charts_have_axes_when_large_enough():
    v = torch.full((1, 8), 0.5)
    big, small = bars(v, 224)[0], bars(v, 64)[0]
    assert big.shape == (224, 224, 3) and small.shape == (64, 64, 3)
    assert ((big[:, :20] < 60).all(-1)).any()  # tick labels left of the plot
    assert not ((small < 60).all(-1)).any()   # no room: bars only


def test_explain_writes_whole_photo_pictures_and_a_crop_view_on_request(tmp_path):
    model = create_model("abn_fmnist")
    path = SAMPLES / "fmnist" / "bag.png"
    for view, side in (("full", 320), ("crop", 224)):
        (rec,) = explain_images(model, [path], ["abn", "gradcam"],
                                ImageOptions(tmp_path / view, view=view))
        pic = Image.open(rec["methods"]["abn"]["overlay"])
        assert pic.size[0] == 224 and pic.size[1] > 224  # 28 px scaled up, labels around it
        assert Image.open(rec["panel"]).size[0] == 3 * side + 2 * 4  # input, abn, gradcam


def test_an_attention_query_is_marked_where_it_is_on_the_photo():
    image = wide_photo()
    _, geometry = IMAGENET.view(image)
    m = torch.zeros(1, 1, 224, 224)
    e = Explanation(m, m, torch.zeros(1, 2), torch.zeros(1), "attention",
                    extras={"query": torch.tensor([[112, 112]])})
    out = picture(e, 0, image, geometry)
    # input pixel 112 (centre 112.5) -> 168.75 + 112.5 * 262.5 / 224 = 300.6 in the photo
    assert (out[150, 300] == 255).all() and not (out[150, 330] == 255).all()
