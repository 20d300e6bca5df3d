"""One figure with every native map of each given model on the same images: per model and
image a row (input | each map, SE excitations as bar charts | Grad-CAM of the same model for
comparison), the prediction in the header.

    python benchmarks/native_maps_figure.py CKPT [CKPT ...] [--images FILE ...] [--out PNG]

CKPT is anything `--model` takes (a zoo name, a checkpoint folder). Default images: the
bundled Fashion-MNIST samples; default output: docs/native-maps.png.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.methods import select  # noqa: E402
from explain.pipeline import explain_batch, prepare  # noqa: E402
from explain.registry import create_model  # noqa: E402
from explain.render import panel, save_png, tiles, upscale_views  # noqa: E402

SAMPLES = ROOT / "explain" / "samples" / "fmnist"


def rows_for(name: str, images: list[Path], size: int) -> list[np.ndarray]:
    model = create_model(name)
    batch, errors = prepare(model, images)
    if errors or batch is None:
        raise SystemExit(f"error: {'; '.join(m for _, m in errors)}")
    expl = explain_batch(model, batch.x, select(model), all_maps=True)
    drawn = {m: tiles(e, batch.views, size) for m, e in expl.items()}
    probs, idx = next(iter(expl.values())).topk(1)
    views = upscale_views(batch.views, size)
    titles = ["input"] + [m.partition("@")[2] or m for m in expl]  # the header names the model
    return [panel([views[i]] + [drawn[m][i] for m in expl], titles,
                  f"{model.name}: {model.class_name(int(idx[i, 0]))} "
                  f"{float(probs[i, 0]):.0%}", columns=len(titles))
            for i in range(len(batch.paths))]


def stack(rows: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Rows of different widths one above the other on white."""
    width = max(r.shape[1] for r in rows)
    out = np.full((sum(r.shape[0] + gap for r in rows), width, 3), 255, np.uint8)
    y = 0
    for r in rows:
        out[y:y + r.shape[0], :r.shape[1]] = r
        y += r.shape[0] + gap
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="zoo names or checkpoint folders")
    ap.add_argument("--images", nargs="+", type=Path,
                    default=[SAMPLES / f"{n}.png" for n in ("sneaker", "bag", "dress")])
    ap.add_argument("--size", type=int, default=96, help="tile size in pixels")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "native-maps.png")
    args = ap.parse_args()
    rows = [r for name in args.models for r in rows_for(name, args.images, args.size)]
    save_png(args.out, stack(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
