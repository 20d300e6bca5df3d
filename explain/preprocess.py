"""A model's input spec: how an RGB image becomes the tensor it expects, and back.

`Geometry` records which box of the original image the model saw, so maps and peaks can be
placed on the original picture.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch loads with the first image: the catalog reads specs without it
    import torch


@dataclass(frozen=True)
class Geometry:
    """The box (left, top, right, bottom) of the original image that fills the model input."""
    box: tuple[float, float, float, float]
    original_size: tuple[int, int]  # (width, height)

    def to_original(self, x: float, y: float, input_size: tuple[int, int]) -> tuple[int, int]:
        """Map a pixel (x, y) of the model input (H, W) to original-image pixel coordinates."""
        left, top, right, bottom = self.box
        h, w = input_size
        ox = left + (x + 0.5) * (right - left) / w
        oy = top + (y + 0.5) * (bottom - top) / h
        return (min(int(ox), self.original_size[0] - 1), min(int(oy), self.original_size[1] - 1))

    def from_original(self, x: float, y: float, input_size: tuple[int, int]
                      ) -> tuple[float, float] | None:
        """The model-input pixel (x, y) (input size (H, W)) that shows original-image pixel
        (x, y); None where the model does not see that pixel (outside the image or the
        crop)."""
        left, top, right, bottom = self.box
        h, w = input_size
        ix = (x + 0.5 - left) * w / (right - left) - 0.5
        iy = (y + 0.5 - top) * h / (bottom - top) - 0.5
        inside = 0 <= x < self.original_size[0] and 0 <= y < self.original_size[1]
        if not (inside and -0.5 <= ix < w - 0.5 and -0.5 <= iy < h - 0.5):
            return None
        return (min(max(ix, 0.0), w - 1.0), min(max(iy, 0.0), h - 1.0))


@dataclass(frozen=True)
class InputSpec:
    """What a network expects: size (H, W), channels, normalisation and resize policy.

    `resize` set: scale the shorter side to `resize`, then centre-crop `size` (ImageNet style).
    `resize` None: scale the whole image to `size` (small-input models).
    """
    size: tuple[int, int]
    channels: int = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    resize: int | None = None
    invert: bool = field(default=False)  # e.g. Fashion-MNIST: light object on dark ground

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        d = dict(d)
        d["size"] = tuple(d["size"])
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)

    def crop_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The box of the original image that the model input covers."""
        if self.resize is None:
            return (0.0, 0.0, float(width), float(height))
        (left, top, right, bottom), (rw, rh) = self._crop(width, height)
        sx, sy = width / rw, height / rh
        return (left * sx, top * sy, right * sx, bottom * sy)

    def _crop(self, width: int, height: int) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
        """torchvision's Resize(resize) output size (the shorter side to `resize`, the longer
        truncated) and its CenterCrop(size) box in integer pixels of that resized image."""
        assert self.resize is not None
        if width <= height:
            rw, rh = self.resize, int(self.resize * height / width)
        else:
            rw, rh = int(self.resize * width / height), self.resize
        h, w = self.size
        top, left = int(round((rh - h) / 2.0)), int(round((rw - w) / 2.0))
        return (left, top, left + w, top + h), (rw, rh)

    def view(self, rgb: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """The part of `rgb` the model sees, resized to the input size (uint8 RGB).

        With `resize`: Resize(resize) then CenterCrop(size) in two steps, exactly as
        torchvision's transforms on a PIL image (the official evaluation scripts), so the
        network sees the pixels it was evaluated on. A one-channel model's view is gray
        (ITU-R 601 luma, three equal channels): overlays show what it saw."""
        height, width = rgb.shape[:2]
        im = Image.fromarray(rgb)
        if self.resize is None:
            im = im.resize(self.size[::-1], Image.BILINEAR)
        else:
            crop, resized = self._crop(width, height)
            im = im.resize(resized, Image.BILINEAR).crop(crop)
        if self.channels == 1:
            im = im.convert("L").convert("RGB")
        return np.array(im), Geometry(self.crop_box(width, height), (width, height))

    def normalise(self, view: np.ndarray) -> torch.Tensor:
        """uint8 RGB view (H, W, 3) -> normalised float tensor (C, H, W); a stack of views
        (B, H, W, 3) -> (B, C, H, W) in one go."""
        import torch
        x = torch.from_numpy(np.ascontiguousarray(view)).movedim(-1, -3).float().div_(255)
        if self.channels == 1:
            x = (0.299 * x[..., 0:1, :, :] + 0.587 * x[..., 1:2, :, :]
                 + 0.114 * x[..., 2:3, :, :])
        if self.invert:
            x = 1.0 - x
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (x - mean) / std

    def __call__(self, rgb: np.ndarray) -> tuple[torch.Tensor, np.ndarray, Geometry]:
        view, geom = self.view(rgb)
        return self.normalise(view), view, geom


IMAGENET = InputSpec(size=(224, 224), resize=256)
