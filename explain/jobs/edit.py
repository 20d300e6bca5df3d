"""The edit session: the browser editor on a queue of images, or edits made from map/mask
files (explain.edits.import_files)."""
from __future__ import annotations

import logging

from ..edits import EditStore
from ..editor.server import EditorServer, EditorSession
from ..model import Model

log = logging.getLogger(__name__)


def open_editor(model: Model, store: EditStore, inputs: list[str], limit: int | None = None,
                topk: int = 5, port: int = 0, progress: bool = True) -> EditorServer:
    """Score and queue the images of `inputs` (misclassified and least confident first),
    then serve the editor on 127.0.0.1:`port` in a background thread. Unreadable images
    (listed in `server.session.errors`) and stored edits that cannot be applied are
    logged as warnings."""
    session = EditorSession(model, store, inputs, limit, topk, progress=progress)
    for msg in session.errors:
        log.warning(msg)
    for i in range(len(session.items)):
        why = session.stored(i)[1]
        if why:
            log.warning("%s; not applied (the page says so; saving replaces it)", why)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request lines
    return EditorServer(session, port).start()
