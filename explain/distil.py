"""Feature views for distilling the pretrained EfficientNet-Lite0 into an ABN on its own
frozen features (`abn_efficientnet_lite0` with `imagenet_classifier`), without labels.

The feature extractor g(x) (stem and blocks 0-10) is frozen, so each augmented view of a
photo needs it only once: `write_views` renders views of the offline photos
(explain.photos), computes g(x) and the teacher's logits, and stores them as float16
shards. `explain train --data FOLDER` then trains on them (explain.trainsets.FeatureViews:
the distillation loss, no augmentation, `from_features`), about twice as fast as from the
images, and an epoch is the same views every time.

Views (224 px) of the training files only:
- `photo`: a random resized crop of a photo (10-100% of its area, aspect 3:4 to 4:3);
- `cutout`: a cut-out (tuxpaint stamp) at 25-90% of the side, at a random place, on a plain
  ground (white half of the time);
- `composite`: the same on a random crop of a photo.
Each then gets a flip, brightness / contrast / saturation jitter, sometimes grayscale or a
blur. The test split is the held-out files as `explain` sees them (ImageNet preprocessing;
cut-outs on white), so training's reported accuracy is top-1 agreement with the teacher on
files it never saw.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter
from safetensors.torch import save as st_save
from tqdm import tqdm

from .atomic import atomic_write_bytes, atomic_write_text
from .errors import ExplainError
from .images import load_image
from .models.abn_efficientnet import SPLIT
from .models.efficientnet import EfficientNetLite0, base_weights, efficientnet_lite0
from .photos import Photos
from .preprocess import IMAGENET
from .registry import imagenet_classes
from .trainsets import VIEWS

log = logging.getLogger(__name__)
SIZE = 224
KINDS = {"photo": 0.3, "cutout": 0.25, "composite": 0.45}  # share of the training views
DOMAIN = {"data": "ImageNet-1k (its 1000 classes, as EfficientNet-Lite0 knows them)",
          "channels": 3, "input_size": [SIZE, SIZE], "classes": 1000,
          "about": "colour photos of everyday objects, animals and scenes; an attention "
                   "branch distilled onto the frozen pretrained network from offline photos, "
                   "not trained on ImageNet itself"}


def rgba(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGBA")


def random_crop(im: Image.Image, rng: np.random.Generator, scale: tuple[float, float] = (0.1, 1.0),
                size: int = SIZE) -> Image.Image:
    """A crop of `scale` of the area, aspect ratio between 3:4 and 4:3, resized to size^2."""
    w, h = im.size
    area = w * h * rng.uniform(*scale)
    ratio = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    cw = int(min(w, max(8, round((area * ratio) ** 0.5))))
    ch = int(min(h, max(8, round((area / ratio) ** 0.5))))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((x0, y0, x0 + cw, y0 + ch)).resize((size, size), Image.BILINEAR)


def paste(cutout: Image.Image, ground: Image.Image, rng: np.random.Generator,
          side: tuple[float, float] = (0.25, 0.9)) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """`cutout` (RGBA) scaled so that its longer side is `side` of the ground's and pasted at
    a random place on `ground` (RGB); returns the picture and the object's box (x0, y0, x1,
    y1), exclusive ends, from its alpha channel."""
    gw, gh = ground.size
    w, h = cutout.size
    s = rng.uniform(*side) * min(gw, gh) / max(w, h)
    obj = cutout.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
    x0 = int(rng.integers(0, gw - obj.width + 1))
    y0 = int(rng.integers(0, gh - obj.height + 1))
    out = ground.convert("RGB")
    out.paste(obj, (x0, y0), obj)
    bx0, by0, bx1, by1 = obj.getchannel("A").point(lambda a: 255 if a > 127 else 0).getbbox() \
        or (0, 0, obj.width, obj.height)
    return out, (x0 + bx0, y0 + by0, x0 + bx1, y0 + by1)


def jitter(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Flip, brightness / contrast / saturation in [0.6, 1.4], grayscale (10%), blur (10%)."""
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        im = enhance(im).enhance(rng.uniform(0.6, 1.4))
    if rng.random() < 0.1:
        im = im.convert("L").convert("RGB")
    if rng.random() < 0.1:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return im


class Renderer:
    """Training views, each a pure function of (seed, index)."""

    def __init__(self, photos: Photos, seed: int):
        self.photos = [Image.fromarray(load_image(p)) for p in photos.train_photos]
        self.cutouts = [rgba(p) for p in photos.train_cutouts]
        if not self.photos or not self.cutouts:
            raise ExplainError("no training photos or cut-outs found")
        self.seed = seed

    def plain(self, rng: np.random.Generator) -> Image.Image:
        colour = (255, 255, 255) if rng.random() < 0.5 else tuple(int(c) for c in rng.integers(0, 256, 3))
        return Image.new("RGB", (SIZE, SIZE), colour)

    def __call__(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, index])
        kind = rng.choice(list(KINDS), p=list(KINDS.values()))
        pick = (lambda pool: pool[int(rng.integers(len(pool)))])
        if kind == "photo":
            im = random_crop(pick(self.photos), rng)
        else:
            ground = self.plain(rng) if kind == "cutout" else \
                random_crop(pick(self.photos), rng, scale=(0.3, 1.0))
            im = paste(pick(self.cutouts), ground, rng)[0]
        return np.array(jitter(im, rng))


def held_out_views(photos: Photos) -> list[np.ndarray]:
    """The held-out files as `explain` shows them to the model (ImageNet preprocessing;
    cut-outs composited on white by explain.images)."""
    return [IMAGENET.view(load_image(p))[0] for p in photos.held_photos + photos.held_cutouts]


@torch.no_grad()
def features_and_teacher(teacher: EfficientNetLite0, views: np.ndarray
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """g(x) (the teacher's stem and blocks 0-10, frozen in the ABN) and the teacher's logits."""
    x = torch.stack([IMAGENET.normalise(v) for v in views])
    g = teacher.stem_and_blocks(x, upto=SPLIT)
    logits = teacher.classify(teacher.head(teacher.blocks_from(g, SPLIT)))
    return g.half(), logits.half()


def _batches(n: int, size: int) -> Iterator[range]:
    """Index ranges of at most `size`, covering range(n)."""
    for s in range(0, n, size):
        yield range(s, min(n, s + size))


def write_views(out: str | os.PathLike, photos: Photos, views: int = 16000, seed: int = 0,
                shard_size: int = 1000, batch_size: int = 32, command: str = "",
                progress: bool = True) -> Path:
    """Render `views` training views and the held-out test views, and write their features
    and teacher logits to `out` (views.json + float16 safetensors shards, each written
    atomically). An interrupted run continues: finished shards are kept."""
    out = Path(out)
    plan = {"arch": "abn_efficientnet_lite0", "split_at": SPLIT, "teacher": "efficientnet_lite0",
            "base": base_weights(), "views": views, "seed": seed, "shard_size": shard_size,
            "kinds": KINDS, "sources": {k: [str(p) for p in v] for k, v in vars(photos).items()}}
    meta_path = out / VIEWS
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if {k: old.get(k) for k in plan} != json.loads(json.dumps(plan)):
            raise ExplainError(f"{out} holds views of another plan (seed, count or sources); "
                               "choose another folder", param="out")
    shards = {"train": [f"train-{s:06d}.safetensors" for s in range(0, views, shard_size)],
              "test": ["test-000000.safetensors"]}
    meta = {**plan, "classes": imagenet_classes(), "input": IMAGENET.to_dict(),
            "domain": DOMAIN,
            "shards": shards, "command": command, "complete": False}
    atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
    teacher = efficientnet_lite0()
    render = Renderer(photos, seed)
    bar = tqdm(total=views + len(photos.held_photos) + len(photos.held_cutouts),
               disable=not progress, desc="views", file=sys.stderr, dynamic_ncols=True)

    def shard(path: Path, n: int, view) -> None:
        parts = []
        for b in _batches(n, batch_size):
            parts.append(features_and_teacher(teacher, np.stack([view(i) for i in b])))
            bar.update(len(b))
        _write_shard(path, parts)

    for name, start in zip(shards["train"], range(0, views, shard_size)):
        n = min(shard_size, views - start)
        if (out / name).is_file():
            bar.update(n)
        else:
            shard(out / name, n, lambda i, s=start: render(s + i))
    held = held_out_views(photos)
    shard(out / shards["test"][0], len(held), held.__getitem__)
    bar.close()
    atomic_write_text(meta_path, json.dumps({**meta, "complete": True}, indent=1) + "\n")
    log.info("%s: %d training views, %d held-out views", out, views, len(held))
    return out


def _write_shard(path: Path, parts: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    atomic_write_bytes(path, st_save({"g": torch.cat([g for g, _ in parts]).contiguous(),
                                      "teacher": torch.cat([t for _, t in parts]).contiguous()}))
