"""`explain edit`: the browser attention-map editor, or scripted edits from map/mask files."""
from __future__ import annotations

import argparse
import sys

from explain.atomic import check_writable

from .common import DEVICE_HELP, device_arg, positive_int

HELP = "edit ABN attention maps in the browser (or import edits from map/mask files)"
DESCRIPTION = """Starts a local web editor on 127.0.0.1 and prints its URL (with a random
token). It shows a queue of the images in INPUT -- misclassified and least-confident first
when they sit in class sub-folders (ImageFolder layout) -- with the model's attention map
M(x). Paint with the remove/add brushes, the eraser restores the original; after each stroke
the server re-runs the perception branch with the edited map and shows the new top-k. Saves
(and navigation, which autosaves) go to the edit store --edits DIR; reopening the editor on
the same folder restores every edit. With --from-maps or --from-masks no server is started:
the edits are made from files named after the images (IMAGE_STEM.png or .npy) and stored."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help=HELP, description=DESCRIPTION)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--model", required=True,
                   help="an ABN: registry name (e.g. abn) or checkpoint folder")
    p.add_argument("--edits", required=True, metavar="DIR", help="edit store folder")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--limit", type=positive_int, help="queue at most this many images")
    p.add_argument("--topk", type=positive_int, default=5, help="classes shown per image")
    p.add_argument("--device", type=device_arg, default="auto", help=DEVICE_HELP)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--from-maps", metavar="DIR",
                     help="grayscale PNGs (any size, any bit depth) or .npy files in [0, 1] "
                          "that are the edited maps M'")
    src.add_argument("--from-masks", metavar="DIR",
                     help="mask files (white = the region); see --mask-mode")
    p.add_argument("--mask-mode", choices=["remove", "add"], default="remove",
                   help="remove: M' = M * (1 - mask); add: M' = max(M, mask)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from explain.edits import EditStore, import_files
    from explain.registry import create_model
    model = create_model(args.model, device=args.device)
    store = EditStore(args.edits)
    check_writable(store.root, "edits")
    if args.from_maps or args.from_masks:
        folder, mode = (args.from_maps, "map") if args.from_maps else (args.from_masks, args.mask_mode)
        stored, problems = import_files(store, model, args.inputs, folder, mode)
        for msg in problems:
            print(f"warning: {msg}", file=sys.stderr)
        print(f"stored {stored} edit(s) in {store.root}")
        if problems:
            print(f"{len(problems)} file(s) not imported", file=sys.stderr)
        return 1 if problems else 0
    from explain.jobs.edit import open_editor  # Flask loads only for the editor
    server = open_editor(model, store, args.inputs, args.limit, args.topk, args.port)
    print(f"editing {len(server.session.items)} image(s); edits go to {store.root}")
    print(f"open {server.url}")
    print("press Ctrl+C to stop", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.stop()
    return 1 if server.session.errors else 0
