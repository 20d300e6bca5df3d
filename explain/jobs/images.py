"""Explain image files: per image the top-k classes, a labelled picture per method (the map
over the whole photo, or over the crop the model saw), a panel, and optionally each map as
.npy; one record per image, so a caller can print as they come."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .. import domain
from ..atomic import atomic_open, check_writable
from ..errors import ExplainError
from ..images import path_digest
from ..model import Model
from ..paths import display
from ..pipeline import Batch, check_layer, explain_batch, prepare
from ..render import View, captioned, fit, mark_crop, panel, picture, save_png


@dataclass(frozen=True)
class ImageOptions:
    out: Path
    layer: str | None = None
    target: int | None = None    # class index to explain (None: the top-1 class)
    topk: int = 5
    batch_size: int = 8
    alpha: float = 0.5
    cmap: str = "jet"
    contour: bool = False
    save_maps: bool = False       # also OUT/<image>_<method>.npy (input resolution, float32)
    query: tuple[float, float] | None = None  # attention query (x, y), original-image pixels
    view: View = "full"           # the whole photo, or "crop": what the model saw
    columns: int = 4              # panel tiles a row
    method_options: dict = field(default_factory=dict)  # to every method (Score-CAM's channels)


def unique_stems(paths: list[Path]) -> list[str]:
    """Output names: the file stem, made unique with a short path hash where stems collide."""
    stems = [p.stem for p in paths]
    return [s if stems.count(s) == 1 else f"{s}-{path_digest(p, 6)}" for s, p in zip(stems, paths)]


def check(model: Model, methods: list[str], opts: ImageOptions) -> None:
    """Refuse a layer or target the model cannot take, and an output folder that cannot be
    written, before any image is read."""
    check_layer(model, methods, opts.layer)
    if opts.target is not None and not 0 <= opts.target < len(model.classes):
        raise ExplainError(f"{opts.target} is not a class index of {model.name} "
                           f"(0..{len(model.classes) - 1})", param="target")
    check_writable(opts.out)


def explain_images(model: Model, paths: list[Path], methods: list[str], opts: ImageOptions
                   ) -> Iterator[dict]:
    """One record per image, batch by batch (a batch's unreadable images first):
    {"image", "topk": [{"index", "name", "probability"}], "warnings": [outside the model's
    domain, explain.domain], "methods": {method: {"overlay", "target", "peak" (x, y in the
    original image), "map"?}}, "panel"}, or {"image", "error"}. Peaks are placed on the original picture; files are written atomically. Paths in records
    are printable (explain.paths.display)."""
    check(model, methods, opts)
    names = dict(zip(paths, unique_stems(paths)))
    for start in range(0, len(paths), opts.batch_size):
        batch, errors = prepare(model, paths[start:start + opts.batch_size])
        batch, query = _queries(model, batch, opts.query, errors)
        for p, msg in errors:
            yield {"image": display(p), "error": msg}
        if batch is None:
            continue
        expl = explain_batch(model, batch.x, methods, opts.layer, opts.target, all_maps=True,
                             query=query, **opts.method_options)
        probs, idx = next(iter(expl.values())).topk(opts.topk)
        for i, p in enumerate(batch.paths):
            yield _record(model, opts, names[p], p, batch, expl,
                          [(float(q), int(c)) for q, c in zip(probs[i], idx[i])], i)


def _queries(model: Model, batch: Batch | None, query: tuple[float, float] | None,
             errors: list) -> tuple[Batch | None, object]:
    """The query of each image in model-input pixels (B, 2), and the batch without the
    images it falls outside of (each such image added to `errors`)."""
    if batch is None or query is None:
        return batch, None
    points = [g.from_original(*query, model.input.size) for g in batch.geometry]
    for p, g, pt in zip(batch.paths, batch.geometry, points):
        if pt is None:
            w, h = g.original_size
            errors.append((p, f"query: ({query[0]:g}, {query[1]:g}) is outside the part of "
                              f"{display(p)} ({w}x{h}) that the model sees"))
    keep = [i for i, pt in enumerate(points) if pt is not None]
    if not keep:
        return None, None
    return batch.subset(keep), torch.tensor([points[i] for i in keep])


def _record(model: Model, opts: ImageOptions, stem: str, path: Path, batch: Batch,
            expl: dict, top: list[tuple[float, int]], i: int) -> dict:
    """Write image `i`'s pictures, maps and panel; its record. An image outside the
    model's domain gets its warning, and its panel shows the original beside the view the
    model saw."""
    out, geometry, outside = opts.out, batch.geometry[i], batch.outside[i]
    record = {"image": display(path), "topk": [
        {"index": c, "name": model.class_name(c), "probability": round(q, 6)} for q, c in top],
        "warnings": [domain.warning(model, outside)] if outside else [], "methods": {}}
    full = opts.view == "full"
    image, box = (batch.images[i], geometry) if full else (batch.views[i], None)
    side = max(320 if full else 224, model.input.size[0])  # panel tiles: longer side
    tiles, spatial = [], False
    for m, e in expl.items():
        tile = picture(e, i, image, box, opts.view, opts.alpha, opts.cmap, opts.contour)
        target = int(e.targets[i])
        probability = float(e.probs[i, target])
        title = f"{m} · {model.class_name(target)} {probability:.1%}"
        file = out / f"{stem}_{m}.png"
        save_png(file, captioned(e, tile, title, model.caption(m), opts.cmap))
        tiles.append(fit(tile, side, side))
        spatial = spatial or e.kind != "vector"
        px, py = e.peaks()[i].tolist()
        entry = {"overlay": display(file), "target": target,
                 "peak": list(geometry.to_original(px, py, model.input.size))}
        if "query" in e.extras:
            qx, qy = e.extras["query"][i].tolist()
            entry["query"] = list(geometry.to_original(qx, qy, model.input.size))
        if opts.save_maps:
            npy = out / f"{stem}_{m}.npy"
            with atomic_open(npy) as f:
                np.save(f, e.maps[i, 0].cpu().numpy().astype(np.float32))
            entry["map"] = display(npy)
        record["methods"][m] = entry
    best = record["topk"][0]
    shown = mark_crop(batch.images[i], geometry) if full else batch.views[i]
    captions = dict.fromkeys(f"{m.partition('@')[0]}: {model.caption(m)}" for m in expl
                             if model.caption(m))
    first, titles, header = [shown], ["input"], f"{best['name']} ({best['probability']:.1%})"
    if outside:
        (w, h), (sh, sw) = geometry.original_size, model.input.size
        gray = " grayscale" if model.input.channels == 1 else ""
        first = [batch.images[i], batch.views[i]]
        titles = [f"original {w}x{h}", f"model saw {sw}x{sh}{gray}"]
        data = domain.domain_of(model.card, model.input, model.classes)["data"]
        header += f"   OUTSIDE THE MODEL'S DOMAIN ({data})"
    panel_file = out / f"{stem}_panel.png"
    save_png(panel_file, panel([fit(t, side, side) for t in first] + tiles, titles + list(expl),
                               header, opts.columns, opts.cmap if spatial else None,
                               list(captions)))
    record["panel"] = display(panel_file)
    return record
