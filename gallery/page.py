"""index.html: the template in `templates/` with the rows embedded as JSON, so the page works
opened straight from disk (file://), with no server, no fetch and no network."""
from __future__ import annotations

import html
import json
import re
from functools import lru_cache
from pathlib import Path

from explain.atomic import atomic_write_text
from explain.render import colormap_lut

TEMPLATE = Path(__file__).parent / "templates" / "index.html"
PAGE = "index.html"


@lru_cache(maxsize=1)
def _template() -> str:
    return TEMPLATE.read_text(encoding="utf-8")


def embed_json(data: object) -> str:
    """JSON that cannot end its <script> element early (`<`, `>`, `&` escaped)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def gradient(cmap: str, stops: int = 11) -> str:
    """The colormap as a CSS gradient, for the page's colour legend."""
    lut = (colormap_lut(cmap) * 255).round().int().tolist()
    colours = [lut[round(i * 255 / (stops - 1))] for i in range(stops)]
    return "linear-gradient(to right, " + ", ".join(
        f"rgb({r},{g},{b}) {100 * i / (stops - 1):g}%" for i, (r, g, b) in enumerate(colours)) + ")"


def render_page(settings: dict, rows: list[dict]) -> str:
    data = {k: settings.get(k) for k in ("title", "model", "methods", "classes", "domain")}
    data["captions"] = settings.get("captions", {})
    data["legend"] = gradient(settings.get("cmap", "jet"))
    data["rows"] = rows
    values = {"TITLE": html.escape(settings["title"]), "DATA": embed_json(data)}
    return re.sub(r"__(TITLE|DATA)__", lambda m: values[m.group(1)], _template())


def write_page(out: Path, settings: dict, rows: list[dict]) -> Path:
    path = out / PAGE
    atomic_write_text(path, render_page(settings, rows))
    return path
