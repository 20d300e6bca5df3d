"""Does an image fit a model? Every model has a domain: the data it was trained on, the
channels and size of its input and its classes (`card["domain"]`, or read off the card).
An image outside it is still explained, but the answer says so, with the geometry stated:
a colour photo squeezed into a 28x28 grayscale Fashion-MNIST model can only ever be called
one of ten garments, and a panorama shown to an ImageNet model is mostly cropped away.

`misfits` returns the reasons (empty when the image fits), each marked severe when the
model cannot see the image as it was trained to (squeezed to another size, colour dropped):
fine-tuning refuses those (explain.finetune). `warning` makes the reasons one line naming
the model's domain; the CLI prints it, `--json` and the gallery carry it.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import ImageError
from .model import Model
from .preprocess import InputSpec

SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I", "F")
GRAY_MODES = ("1", "L", "LA", *SIXTEEN_BIT)  # PIL modes that can hold no colour
COLOUR_SPREAD = 8     # max - min of a pixel's channels above this: a colour pixel
ENLARGED = 2.0        # a crop model enlarging the image this much: far smaller than its input
PANORAMA = 2.0        # aspect ratio beyond which a centre crop drops most of the image
REFUSED_ASPECT = 20.0  # beyond this, a crop model would see a sliver: refused
KNOWN_DATA = {"fashion-mnist": "Fashion-MNIST", "cluttered-fmnist": "Cluttered-FashionMNIST",
              "decoy-fmnist": "Decoy-FashionMNIST"}


def domain_of(card: dict, spec: InputSpec, classes: list[str]) -> dict:
    """The card's `domain`, or one read off its data, input spec and classes."""
    if card.get("domain"):
        return card["domain"]
    data = str(card.get("data") or "unknown data")
    return {"data": KNOWN_DATA.get(data, data), "channels": spec.channels,
            "input_size": list(spec.size), "classes": len(classes)}


def describe(model: Model) -> str:
    """One line: data set, input and classes, e.g. "Fashion-MNIST: 28x28 grayscale images,
    10 classes (T-shirt/top, Trouser, Pullover, ...)"."""
    d = domain_of(model.card, model.input, model.classes)
    h, w = d["input_size"]
    names = ", ".join(model.classes[:3]) + (", ..." if len(model.classes) > 3 else "")
    colour = "grayscale" if d["channels"] == 1 else "colour"
    about = f"; {d['about']}" if d.get("about") else ""
    return f"{d['data']}: {w}x{h} {colour} images, {d['classes']} classes ({names}){about}"


def is_colour(rgb: np.ndarray) -> bool:
    """Any pixel whose channels differ by more than COLOUR_SPREAD (JPEG noise stays below)."""
    small = rgb[::max(1, rgb.shape[0] // 256), ::max(1, rgb.shape[1] // 256)].astype(np.int16)
    return bool((small.max(axis=2) - small.min(axis=2)).max() > COLOUR_SPREAD)


class Misfit(NamedTuple):
    text: str      # the reason, with its geometry
    severe: bool   # the model cannot see the image as it was trained to


def check(spec: InputSpec, rgb: np.ndarray, mode: str = "RGB", source: str = "image"
          ) -> list[str]:
    """The reasons of `misfits`, as text."""
    return [m.text for m in misfits(spec, rgb, mode, source)]


def misfits(spec: InputSpec, rgb: np.ndarray, mode: str = "RGB", source: str = "image"
            ) -> list[Misfit]:
    """Why the image (H, W, 3 uint8, read from a file of PIL `mode`) does not fit a model
    with input `spec`, each reason with its geometry; [] when it fits. Raises ImageError
    for an image so elongated that the model would see a sliver of it."""
    h, w = rgb.shape[:2]
    size_h, size_w = spec.size
    reasons = []
    if mode in SIXTEEN_BIT:
        reasons.append(Misfit(f"a {mode} ({'16-bit' if mode.startswith('I;16') else '32-bit'}) "
                              "image, scaled to 8 bits", False))
    if mode == "CMYK":
        reasons.append(Misfit("a CMYK image, converted to RGB", False))
    aspect = max(w, h) / min(w, h)
    if spec.resize is None:
        if (h, w) != (size_h, size_w):
            reasons.append(Misfit(f"{w}x{h} px, resized to {size_w}x{size_h}"
                                  + (f" (aspect ratio {aspect:.1f}:1 squeezed to 1:1)"
                                     if aspect > 1.1 and size_h == size_w else ""), True))
    else:
        if aspect > REFUSED_ASPECT:
            raise ImageError(f"{source}: {w}x{h} px (aspect ratio {aspect:.0f}:1): a {size_w}x{size_h} "
                             "centre crop would show the model a sliver of it; crop the "
                             "image first")
        scale = spec.resize / min(w, h)
        if scale >= ENLARGED:
            reasons.append(Misfit(f"{w}x{h} px, enlarged {scale:.1f}x to fill the "
                                  f"{size_w}x{size_h} input", False))
        if aspect > PANORAMA:
            x0, y0, x1, y1 = spec.crop_box(w, h)
            share = (x1 - x0) * (y1 - y0) / (w * h)
            reasons.append(Misfit(f"a {w}x{h} panorama: the model sees only its centre "
                                  f"{round(x1 - x0)}x{round(y1 - y0)} px ({share:.0%} of it)",
                                  False))
    colour = mode not in GRAY_MODES and is_colour(rgb)
    if spec.channels == 1 and colour:
        reasons.append(Misfit(f"a colour image, seen as {size_w}x{size_h} grayscale", True))
    if spec.channels == 3 and not colour:
        reasons.append(Misfit("a grayscale image; the model was trained on colour", False))
    return reasons


def warning(model: Model, reasons: list[str]) -> str:
    """The one line an image outside `model`'s domain gets."""
    return (f"outside the domain of {model.name} ({describe(model)}): " + "; ".join(reasons)
            + (f". Its answer is one of these {len(model.classes)} classes whatever the image"
               if len(model.classes) <= 100 else ""))
