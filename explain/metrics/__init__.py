"""Explanation metrics (protocols: shared BENCHMARKS.md, "Explanation metrics").

Per-image functions on batched tensors return one value per image, NaN marking an image
skipped by the metric's definition; `summarise` turns them into a mean with a 95% interval
and a skipped count. `evaluate` runs a whole evaluation for `explain eval`.
"""
from .evaluate import METRICS, Report, evaluate
from .faithfulness import auc, confidence_change, perturbation_curves
from .localisation import (box_masks, energy_pointing_game, pointing_game, pointing_tolerance,
                           wr_threshold, wrong_reason)
from .sanity import SanityResult, randomisation_units, rank_correlation, sanity_check, ssim
from .sources import array_source, folder_source
from .stats import Stat, summarise

__all__ = ["METRICS", "Report", "SanityResult", "Stat", "array_source", "auc", "box_masks",
           "confidence_change", "energy_pointing_game", "evaluate", "folder_source",
           "perturbation_curves", "pointing_game", "pointing_tolerance", "randomisation_units",
           "rank_correlation", "sanity_check", "ssim", "summarise", "wr_threshold",
           "wrong_reason"]
