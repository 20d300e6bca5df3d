"""The result every method returns; renderer, gallery, editor and metrics all consume it."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from .capabilities import Kind


def normalise(m: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Min-max each map of a (B, ...) batch to [0, 1]; constant or non-finite maps -> 0."""
    m = torch.nan_to_num(m.float(), nan=0.0, posinf=0.0, neginf=0.0)
    flat = m.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = (hi - lo).view(-1, *[1] * (m.ndim - 1))
    out = (m - lo.view_as(span)) / span.clamp(min=eps)
    return torch.where(span > eps, out, torch.zeros_like(out))


def upsample(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, k, h, w) -> (B, k, H, W), bilinear."""
    if m.shape[-2:] == tuple(size):
        return m
    return F.interpolate(m.float(), size=size, mode="bilinear", align_corners=False)


def map_of(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The displayed map of a raw one (B, k, h, w): its channel mean at input size (H, W),
    min-max normalised per image."""
    return normalise(upsample(raw.mean(1, keepdim=True), size))


@dataclass
class Explanation:
    """Maps for a batch, batch-first torch tensors on the model's device.

    maps:    (B, 1, H, W) in [0, 1] at input resolution (min-max per image)
    raw:     the method's map before normalisation, at feature resolution (B, k, h, w), or
             a vector (B, C) for methods without a spatial map (SE excitations)
    logits:  (B, K) the model's output on the clean input
    targets: (B,) the class each map explains
    kind:    "spatial", or "vector" where `raw` is a vector (and `maps` zero): the renderer
             draws a bar chart instead of an overlay
    """
    maps: torch.Tensor
    raw: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor
    method: str
    layer: str | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    kind: Kind = "spatial"

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.float().softmax(1)

    def topk(self, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities, class indices), each (B, k)."""
        return self.probs.topk(min(k, self.logits.shape[1]), dim=1)

    def peaks(self) -> torch.Tensor:
        """(B, 2) integer (x, y) of each map's maximum in input pixels."""
        b, _, h, w = self.maps.shape
        idx = self.maps.reshape(b, -1).argmax(1)
        return torch.stack([idx % w, idx // w], dim=1)

    def show(self, image=None, geometry=None, index: int = 0, **options):
        """The picture of image `index` (explain.render.render: over `image`, the photo,
        placed by `geometry` from `Model.input`; without one the map alone), as a PIL
        image: a notebook displays it, `.save(path)` writes it."""
        from .render import render
        return render(self, image, geometry, index, **options)

    def _repr_png_(self) -> bytes:
        """Notebooks show an Explanation as its maps (the first 8 images), titled and with
        a colour legend."""
        from .render import captioned, panel, picture, png_bytes
        n = min(8, self.maps.shape[0])
        tiles = [picture(self, i) for i in range(n)]
        titles = [f"{self.method} · class {int(self.targets[i])}" for i in range(n)]
        if n == 1:
            return png_bytes(captioned(self, tiles[0], titles[0]))
        vector = self.kind == "vector"
        return png_bytes(panel(tiles, titles, cmap=None if vector else "jet"))

    def cpu(self) -> "Explanation":
        return replace(self, maps=self.maps.cpu(), raw=self.raw.cpu(), logits=self.logits.cpu(),
                       targets=self.targets.cpu(), extras={k: v.cpu() for k, v in self.extras.items()})

    def __getitem__(self, i: slice | torch.Tensor) -> "Explanation":
        return replace(self, maps=self.maps[i], raw=self.raw[i], logits=self.logits[i],
                       targets=self.targets[i], extras={k: v[i] for k, v in self.extras.items()})
