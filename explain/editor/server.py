"""The attention-map editor: a small Flask app on 127.0.0.1 serving a plain HTML/JS page.

Security model: the server listens on 127.0.0.1 only and every request must carry the
random per-session token (query `token` or header `X-Explain-Token`), else 403. Requests
naming another Host than 127.0.0.1 or localhost with the server's port are refused (403;
DNS rebinding), and so is every POST that is not `application/json` (415) or whose Origin
(or, without one, Referer) is not the server's own (403): a page elsewhere cannot write an
edit even with the token (the editor's own fetches send their Origin). No page sends a
Referer (`Referrer-Policy: no-referrer`), so the token in the page's URL goes nowhere else.
It serves its own static files and the queued images by index, nothing else (404,
including `../`, absolute and percent-encoded paths); request bodies are bounded (413); bad
or too deeply nested JSON or a map of the wrong size is a 400 with a message; a save the
disk refuses is a 507 naming the file. Saves go through the edit store, whose lock
serialises them, so two saves of one image leave one valid file, never a torn one.

API (JSON): GET /api/config, /api/queue, /api/item/I; GET /image/I (the PNG the model saw);
POST /api/score/I {"map": [H*W floats]} re-runs the perception branch with M' and returns
top-k; POST /api/save/I {"map": [...], "label": int|null} stores the edit.
"""
from __future__ import annotations

import hmac
import json
import math
import secrets
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from flask import Flask, Response, abort, jsonify, request, send_from_directory
from tqdm import tqdm
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

from ..edits import (Edit, EditStore, editable_map, folder_labels, map_scale, model_id,
                     model_maps)
from ..errors import ExplainError
from ..images import find_images
from ..model import Model
from ..paths import display
from ..pipeline import prepare
from ..render import colormap_lut, png_bytes

STATIC = Path(__file__).parent / "static"
MAX_BODY = 4 << 20  # a 224x224 map as JSON is ~0.5 MB


@dataclass
class Item:
    """A queued image: what the model saw, its label (if known) and its prediction."""
    path: Path
    view: np.ndarray      # (H, W, 3) uint8
    label: int | None
    pred: int
    confidence: float     # probability of the predicted class
    true_prob: float | None


class EditorSession:
    """The images to edit, in queue order, with the model and the edit store."""

    def __init__(self, model: Model, store: EditStore, inputs: list[str], limit: int | None = None,
                 topk: int = 5, batch_size: int = 64, progress: bool = True):
        editable_map(model)  # refuses a model whose maps cannot be fed back
        self.model, self.store, self.topk = model, store, topk
        self.model_id = model_id(model)
        self.scale = map_scale(model)  # the page paints in edit units
        self.lock = threading.Lock()  # one forward pass at a time on the shared network
        paths = find_images(inputs)
        labels = dict(zip(paths, folder_labels(paths, inputs, model.classes)))
        items: list[Item] = []
        self.errors: list[str] = []
        for start in tqdm(range(0, len(paths), batch_size), desc="scoring images", unit="batch",
                          disable=not progress, file=sys.stderr):
            batch, errors = prepare(model, paths[start:start + batch_size])
            self.errors += [msg for _, msg in errors]
            if batch is None:
                continue
            _, probs = model_maps(model, batch.x)
            conf, pred = probs.max(1)
            for j, p in enumerate(batch.paths):
                lab = labels[p]
                items.append(Item(p, batch.views[j], lab, int(pred[j]), float(conf[j]),
                                  None if lab is None else float(probs[j, lab])))
        if not items:
            raise ExplainError(f"{', '.join(inputs)}: no readable images to edit", param="inputs")
        if all(it.label is not None for it in items):
            # misclassified first, then the least confident (lowest probability of the truth)
            items.sort(key=lambda it: (it.pred == it.label, it.true_prob))
        self.items = items[:limit] if limit else items

    @lru_cache(maxsize=32)
    def analyse(self, i: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
        """(input tensor (1, C, H, W), original map M(x) (H, W), probabilities (K,))."""
        x = self.model.input.normalise(self.items[i].view)[None].to(self.model.device)
        with self.lock:
            maps, probs = model_maps(self.model, x)
        return x, maps[0].numpy(), probs[0]

    def ranked(self, probs: torch.Tensor) -> list[dict]:
        p, c = probs.topk(min(self.topk, len(probs)))
        return [{"index": int(k), "name": self.model.class_name(int(k)), "probability": float(v)}
                for v, k in zip(p, c)]

    def stored(self, i: int) -> tuple[Edit | None, str | None]:
        """The stored edit of item i, and why it is not applied (when it is not)."""
        edit = self.store.find(self.items[i].path)
        if edit is None:
            return None, None
        why = self.store.problem(edit, self.model_id, self.items[i].path)
        return (None, why) if why else (edit, None)

    def item(self, i: int) -> dict:
        it = self.items[i]
        _, original, probs = self.analyse(i)
        edit, warning = self.stored(i)
        edited = self.store.load(edit)[1] if edit else None
        if edited is not None and edited.shape != original.shape:
            edit, edited, warning = None, None, "stored edit has another map size; not applied"
        return {"index": i, "name": display(it.path.name), "path": display(it.path),
                "label": it.label,
                "height": original.shape[0], "width": original.shape[1],
                "original": original.tolist(),  # exact float32 values: untouched pixels
                "edited": None if edited is None else edited.tolist(),  # save back unchanged
                "revision": edit.revision if edit else 0, "warning": warning,
                "topk": self.ranked(probs)}

    def score(self, i: int, edited: np.ndarray) -> list[dict]:
        """Top-k of the perception branch re-run with M' in place of M(x)."""
        x, _, _ = self.analyse(i)
        att = self.scale.raw(torch.from_numpy(edited))[None, None].to(x.device)
        with self.lock, torch.no_grad():
            self.model.net.eval()
            probs = self.model.net(x, att=att).float().softmax(1)[0].cpu()
        return self.ranked(probs)

    def save(self, i: int, edited: np.ndarray, label: int | None) -> Edit:
        _, original, _ = self.analyse(i)
        return self.store.save(self.items[i].path, self.model_id, label, original, edited)

    def queue(self) -> list[dict]:
        entries = self.store.entries()
        keys = {e.image for e in entries.values()}
        return [{"index": i, "name": display(it.path.name), "label": it.label, "pred": it.pred,
                 "confidence": it.confidence, "edited": str(it.path.resolve()) in keys}
                for i, it in enumerate(self.items)]


def refuse(status: int, message: str) -> None:
    abort(Response(json.dumps({"error": message}), status, mimetype="application/json"))


def parse_map(session: EditorSession, i: int) -> tuple[np.ndarray, dict]:
    """The posted map as (H, W) float32 in [0, 1] and the whole JSON body; 400 otherwise."""
    try:
        body = json.loads(request.get_data(cache=False) or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        refuse(400, f"request body is not valid JSON ({e})")
    except RecursionError:
        refuse(400, "request body is nested too deeply")
    if not isinstance(body, dict) or not isinstance(body.get("map"), list):
        refuse(400, 'expected a JSON object {"map": [H*W numbers]}')
    h, w = session.model.input.size
    values = body["map"]
    if len(values) != h * w:
        refuse(400, f"map has {len(values)} values; expected {h * w} ({w}x{h}, row-major)")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               and 0 <= v <= 1 for v in values):
        refuse(400, "map values must be numbers within [0, 1]")
    return np.asarray(values, np.float32).reshape(h, w), body


def same_origin(host: str) -> bool:
    """The request comes from a page of this server: its Origin, or when a client sends
    none its Referer, is http://HOST (a missing or `null` Origin is not enough)."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin == f"http://{host}"
    return request.headers.get("Referer", "").startswith(f"http://{host}/")


def create_app(session: EditorSession, token: str, port: int | None = None,
               max_body: int = MAX_BODY) -> Flask:
    """The app; it answers only requests addressed to 127.0.0.1:`port` or localhost:`port`
    (`allow_port` sets the port once the server has one)."""
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = max_body
    app.url_map.merge_slashes = False  # "//etc/passwd" is a 404, not a redirect
    allow_port(app, port)
    n = len(session.items)

    def item_index(i: int) -> int:
        if not 0 <= i < n:
            abort(404)
        return i

    @app.before_request
    def check_request() -> None:
        if request.host not in app.config["HOSTS"]:
            refuse(403, f"Host {request.host!r} refused: the editor answers only "
                        f"{' or '.join(app.config['HOSTS'])}")
        given = request.headers.get("X-Explain-Token") or request.args.get("token") or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            abort(403)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            if not same_origin(request.host):
                refuse(403, "cross-site request refused: its Origin or Referer is not "
                            f"http://{request.host}")
            if request.mimetype != "application/json":
                refuse(415, "request body must be application/json")

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; "
                                                   "connect-src 'self'; frame-ancestors 'none'")
        return resp

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        if e.response is not None:
            return e.response
        return Response(json.dumps({"error": e.name}), e.code, mimetype="application/json")

    @app.errorhandler(OSError)
    def disk_error(e: OSError) -> Response:  # a full disk, a read-only store, ...
        where = f"{display(e.filename)}: " if e.filename else ""
        return Response(json.dumps({"error": f"cannot save: {where}{e.strerror or e}"}), 507,
                        mimetype="application/json")

    @app.get("/")
    def index() -> Response:
        html = (STATIC / "index.html").read_text().replace("__TOKEN__", token)
        return Response(html, mimetype="text/html")

    @app.get("/static/<path:name>")
    def static_file(name: str) -> Response:
        return send_from_directory(STATIC, name)  # safe_join: 404 for ../ and absolute paths

    @app.get("/api/config")
    def config() -> Response:
        lut = (colormap_lut("jet") * 255).round().int().tolist()
        return jsonify({"model": session.model.name, "classes": session.model.classes,
                        "size": list(session.model.input.size), "count": n, "lut": lut,
                        "edits": display(session.store.root)})

    @app.get("/api/queue")
    def queue() -> Response:
        return jsonify(session.queue())

    @app.get("/api/item/<int:i>")
    def item(i: int) -> Response:
        return jsonify(session.item(item_index(i)))

    @app.get("/image/<int:i>")
    def image(i: int) -> Response:
        return Response(png_bytes(session.items[item_index(i)].view), mimetype="image/png")

    @app.post("/api/score/<int:i>")
    def score(i: int) -> Response:
        edited, _ = parse_map(session, item_index(i))
        return jsonify({"topk": session.score(i, edited)})

    @app.post("/api/save/<int:i>")
    def save(i: int) -> Response:
        edited, body = parse_map(session, item_index(i))
        label = body.get("label", session.items[i].label)
        if label is not None and (not isinstance(label, int) or isinstance(label, bool)
                                  or not 0 <= label < len(session.model.classes)):
            refuse(400, f"label must be a class index 0..{len(session.model.classes) - 1} "
                        "or null")
        edit = session.save(i, edited, label)
        return jsonify({"revision": edit.revision,
                        "file": display(session.store.root / edit.edited)})

    return app


def allow_port(app: Flask, port: int | None) -> None:
    app.config["HOSTS"] = () if port is None else (f"127.0.0.1:{port}", f"localhost:{port}")


class EditorServer:
    """The app on 127.0.0.1:`port` (0 picks a free port) in a background thread."""

    def __init__(self, session: EditorSession, port: int = 0, max_body: int = MAX_BODY):
        self.session = session
        self.token = secrets.token_urlsafe(24)
        self.app = create_app(session, self.token, max_body=max_body)
        self.server = make_server("127.0.0.1", port, self.app, threaded=True)
        allow_port(self.app, self.server.server_port)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/?token={self.token}"

    def start(self) -> "EditorServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
