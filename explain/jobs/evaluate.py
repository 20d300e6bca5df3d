"""Measure explanation methods on a named data set (with its ground truth) or an image
folder (optionally with a boxes file); see explain.metrics for the protocols."""
from __future__ import annotations

from pathlib import Path

from ..datasets import SYNTHETIC, load_named
from ..errors import ExplainError
from ..metrics import Report, array_source, evaluate, folder_source
from ..metrics.report import write_outputs
from ..model import Model
from ..pipeline import check_layer


def evaluate_on(model: Model, data: str, methods: list[str], layer: str | None = None,
                boxes: str | None = None, gt: str = "box", limit: int | None = None,
                batch_size: int = 32, steps: int = 16, sanity_images: int = 16, seed: int = 0,
                precision: str = "fp32", out: str | Path | None = None, progress: bool = True,
                road: bool = False, options: dict | None = None
                ) -> tuple[Report, dict[str, Path]]:
    """The report of `methods` on the first `limit` test images of `data` (a name in
    explain.datasets.SYNTHETIC, or an image folder), and the files written to `out`
    (metrics.json, metrics.csv, curves.png, sanity.png; none without `out`). `road` adds
    ROAD (MoRF and LeRF); `options` go to the methods (Score-CAM's `channels`, ...)."""
    check_layer(model, methods, layer)
    if data in SYNTHETIC:
        if boxes:
            raise ExplainError(f"{data} carries its own ground truth; boxes are for image "
                               "folders", param="boxes")
        source = array_source(load_named(data, "test"), model.input, batch_size, gt, limit)
    else:
        source = folder_source(model, data, boxes, batch_size, limit)
    report = evaluate(model, source, methods, layer, steps, sanity_images, seed,
                      precision=precision, progress=progress, road=road, options=options)
    return report, write_outputs(report, Path(out)) if out is not None else {}
