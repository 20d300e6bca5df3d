"""Fashion-MNIST and the generated Cluttered / Decoy variants: deterministic, and the
ground truth marks where the object / decoy really is."""
from __future__ import annotations

import numpy as np

from explain.datasets import (FMNIST_MEAN, FMNIST_STD, cluttered_fmnist, decoy_fmnist,
                              fashion_mnist)


def test_fashion_mnist_and_its_normalisation_constants():
    tr, te = fashion_mnist("train"), fashion_mnist("test")
    assert tr.images.shape == (60000, 28, 28) and te.images.shape == (10000, 28, 28)
    assert sorted(np.unique(tr.labels)) == list(range(10))
    x = tr.images / 255.0
    assert abs(x.mean() - FMNIST_MEAN) < 1e-3 and abs(x.std() - FMNIST_STD) < 1e-3


def test_decoy_is_deterministic_and_where_the_mask_says():
    a, b = decoy_fmnist("train", seed=3, limit=500), decoy_fmnist("train", seed=3, limit=500)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.masks, decoy_fmnist("train", seed=4, limit=500).masks)
    clean = fashion_mnist("train", limit=500)
    corners = set()
    for img, mask, box, y, orig in zip(a.images, a.masks, a.boxes, a.labels, clean.images):
        assert mask.sum() == 16
        x0, y0, x1, y1 = box
        assert mask[y0:y1, x0:x1].all() and (x0, y0) in {(0, 0), (24, 0), (0, 24), (24, 24)}
        corners.add((x0, y0))
        assert (img[mask] == 255 - 25 * y).all()          # training: level encodes the label
        assert np.array_equal(img[~mask], orig[~mask])     # nothing else touched
    assert len(corners) == 4
    # test split: the level comes from a random class, not the label
    t = decoy_fmnist("test", seed=3, limit=2000)
    levels = np.array([img[m][0] for img, m in zip(t.images, t.masks)])
    assert (levels == 255 - 25 * t.extra["decoy_level"]).all()
    assert (t.extra["decoy_level"] != t.labels).mean() > 0.8


def test_limit_gives_the_full_sets_first_samples():
    small = cluttered_fmnist("test", seed=1, limit=20)
    big = cluttered_fmnist("test", seed=1, limit=200)
    assert np.array_equal(small.images, big.images[:20]) and np.array_equal(small.boxes, big.boxes[:20])


def test_cluttered_object_is_in_its_box_and_mask():
    d = cluttered_fmnist("train", seed=0, limit=300)
    again = cluttered_fmnist("train", seed=0, limit=300)
    assert np.array_equal(d.images, again.images) and np.array_equal(d.masks, again.masks)
    clean = fashion_mnist("train", limit=300)
    assert d.images.shape == (300, 64, 64)
    for img, mask, box, item in zip(d.images, d.masks, d.boxes, clean.images):
        x0, y0, x1, y1 = box
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
        assert mask.sum() == (item > 0).sum()
        assert (img[mask] >= item[item > 0]).all()     # the item is there, clutter only adds
        assert (img[~mask] > 0).sum() > 0               # clutter exists outside the object
