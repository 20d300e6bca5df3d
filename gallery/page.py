"""index.html: the template in `templates/` with the rows embedded as JSON, so the page works
opened straight from disk (file://), with no server, no fetch and no network."""
from __future__ import annotations

import html
import json
import re
from functools import lru_cache
from pathlib import Path

from explain.atomic import atomic_write_text

TEMPLATE = Path(__file__).parent / "templates" / "index.html"
PAGE = "index.html"


@lru_cache(maxsize=1)
def _template() -> str:
    return TEMPLATE.read_text(encoding="utf-8")


def embed_json(data: object) -> str:
    """JSON that cannot end its <script> element early (`<`, `>`, `&` escaped)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(settings: dict, rows: list[dict]) -> str:
    data = {k: settings[k] for k in ("title", "model", "methods", "classes")}
    data["rows"] = rows
    values = {"TITLE": html.escape(settings["title"]), "DATA": embed_json(data)}
    return re.sub(r"__(TITLE|DATA)__", lambda m: values[m.group(1)], _template())


def write_page(out: Path, settings: dict, rows: list[dict]) -> Path:
    path = out / PAGE
    atomic_write_text(path, render_page(settings, rows))
    return path
