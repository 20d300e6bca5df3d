"""A Report as a text or Markdown table, JSON, CSV and matplotlib figures, all written
atomically. Cells read "mean [low, high]" (95% interval); a metric no image could be scored
on reads "n/a" with its skipped count, never NaN."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..atomic import atomic_write_bytes, atomic_write_text
from .evaluate import METRICS, Report

SANITY_LIMIT = 0.3  # similarity at full randomisation a faithful method stays below


def metric_names(report: Report) -> list[str]:
    present = {k for d in report.metrics.values() for k in d}
    return [k for k in METRICS if k in present]


def table_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and one row per method: each metric's "mean [low, high]"."""
    names = metric_names(report)
    header = ["method"] + [f"{METRICS[k].label} ({'↑' if METRICS[k].better == 'higher' else '↓'})"
                           for k in names]
    rows = [[m] + [report.metrics[m][k].text(METRICS[k].digits) if k in report.metrics[m] else "-"
                   for k in names] for m in report.methods]
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    cells = lambda r: "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"  # noqa: E731
    return "\n".join([cells(header), "|" + "---|" * len(header)] + [cells(r) for r in rows])


def sanity_failures(report: Report) -> list[str]:
    """Methods whose |Spearman| similarity at full randomisation is not below SANITY_LIMIT."""
    return [m for m, d in report.metrics.items() if d.get("sanity_spearman") is not None
            and d["sanity_spearman"].mean is not None and d["sanity_spearman"].mean >= SANITY_LIMIT]


def summary(report: Report) -> str:
    """The header lines above the table: what was measured, on what, and what was skipped."""
    acc = f", model accuracy {report.accuracy:.1%}" if report.accuracy is not None else ""
    lines = [f"{report.model} on {report.data}: {report.images} images{acc}; deletion/insertion "
             f"in {report.settings['steps']} steps; sanity check on "
             f"{report.settings['sanity_images']} images"]
    for m, c in report.map_counts.items():
        if c["constant_maps"] or c["nonfinite_maps"]:
            lines.append(f"{m}: {c['constant_maps']} constant map(s) (scored as uniform / random "
                         f"order), {c['nonfinite_maps']} non-finite map(s) (skipped)")
    fails = sanity_failures(report)
    if fails:
        lines.append(f"sanity check: |Spearman| at full randomisation >= {SANITY_LIMIT} for: "
                     + ", ".join(fails))
    return "\n".join(lines + [f"note: {n}" for n in report.notes])


def csv_text(report: Report) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "data", "method", "metric", "mean", "low", "high", "n", "skipped"])
    for m in report.methods:
        for k in metric_names(report):
            if k in report.metrics[m]:
                s = report.metrics[m][k]
                w.writerow([report.model, report.data, m, k, s.mean, s.low, s.high, s.n, s.skipped])
    return buf.getvalue()


def _figure_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def curves_figure(report: Report) -> bytes:
    """Deletion and insertion curves, one line per method, AUC in the legend."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 4))
    for ax, mode in zip(fig.subplots(1, 2), ("deletion", "insertion")):
        for m in report.methods:
            ys = report.curves.get(m, {}).get(mode)
            if ys and ys[0] is not None:
                area = report.metrics[m][f"{mode}_auc"].mean
                ax.plot(report.fractions, ys, label=f"{m} (AUC {area:.3f})")
        ax.set(title=f"{mode} ({'lower' if mode == 'deletion' else 'higher'} is better)",
               xlabel=f"fraction of pixels {'deleted' if mode == 'deletion' else 'inserted'}",
               ylabel="probability of the predicted class", xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{report.model} on {report.data} ({report.images} images)")
    return _figure_bytes(fig)


def sanity_figure(report: Report) -> bytes:
    """Spearman and SSIM of each method's maps against the original, per randomised unit."""
    from matplotlib.figure import Figure
    units = max((d["units"] for d in report.sanity.values()), key=len, default=[])
    fig = Figure(figsize=(max(8, 0.45 * len(units) + 4), 4.5))
    for ax, key in zip(fig.subplots(1, 2), ("spearman", "ssim")):
        for m, d in report.sanity.items():
            ys = [s.mean for s in d[key]]
            ax.plot(range(len(ys)), [float("nan") if y is None else y for y in ys], marker=".", label=m)
        ax.axhline(SANITY_LIMIT, color="gray", ls="--", lw=0.8)
        ax.set_xticks(range(len(units)), units, rotation=90, fontsize=7)
        ax.set(title=f"{'|Spearman rank correlation|' if key == 'spearman' else 'SSIM'} to the original map",
               xlabel="randomised down to (cumulative, from the top)", ylim=(-0.2, 1.05))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"cascading randomisation: {report.model} ({report.settings['sanity_images']} images)")
    return _figure_bytes(fig)


def write_outputs(report: Report, out: str | Path) -> dict[str, Path]:
    """metrics.json, metrics.csv, curves.png and (when run) sanity.png under `out`."""
    out = Path(out)
    files = {"json": out / "metrics.json", "csv": out / "metrics.csv", "curves": out / "curves.png"}
    atomic_write_text(files["json"], json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    atomic_write_text(files["csv"], csv_text(report))
    atomic_write_bytes(files["curves"], curves_figure(report))
    if report.sanity:
        files["sanity"] = out / "sanity.png"
        atomic_write_bytes(files["sanity"], sanity_figure(report))
    return files
