"""An HTML gallery of many images (explain.gallery), from a model name: under torchrun
every rank runs `make_gallery`, on its own device, and rank 0 merges the shards."""
from __future__ import annotations

from pathlib import Path

from ..atomic import check_writable
from ..errors import ExplainError
from ..gallery.build import Options, Summary, build_gallery
from ..gallery.inputs import collect
from ..gallery.shard import join, leave
from ..gallery.writer import Style
from ..methods import select
from ..paths import display
from ..pipeline import check_layer
from ..registry import create_model


def make_gallery(input: str, out: str | Path, model: str, weights: str | None = None,
                 device: str = "cpu", methods: str | list[str] | None = None,
                 layer: str | None = None, title: str | None = None, size: int | None = None,
                 alpha: float = 0.5, cmap: str = "jet", batch_size: int = 32, workers: int = 1,
                 limit: int | None = None, resume: bool = False, progress: bool = True,
                 method_options: dict | None = None, streams: int | None = None
                 ) -> tuple[Summary, bool]:
    """Build (or with `resume` complete) the gallery of INPUT `input` (a folder, a glob or a
    list file) in `out`. Methods and layer are checked against the model's declared
    capabilities before any image is read. Returns the summary (on every rank) and whether
    this process is the one that reports (rank 0)."""
    if workers < 0:
        raise ExplainError("must be 0 or more", param="workers")
    if not 0.0 <= alpha <= 1.0:
        raise ExplainError("must be between 0 and 1", param="alpha")
    group = join()
    try:
        items = collect(input, limit)
        if group.world > 1 and device.startswith("cuda"):
            device = f"cuda:{group.local_rank}"
        net = create_model(model, weights, device)
        names = select(net, methods)
        check_layer(net, names, layer)
        out = Path(out)
        check_writable(out)
        title = display(title or f"{Path(input.rstrip('/')).name or input} · {net.name}")
        opts = Options(methods=names, layer=layer, title=title,
                       style=Style(size or max(net.input.size), alpha, cmap),
                       batch_size=batch_size, workers=workers, streams=streams, resume=resume,
                       progress=progress,
                       method_options=method_options or {})
        return build_gallery(net, items, out, opts, group), group.leader
    finally:
        leave(group)
