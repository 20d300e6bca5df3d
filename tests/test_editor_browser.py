"""The editor in a real browser (Playwright + Debian chromium): paint, re-score, save, reload."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from explain.edits import EditStore, read_map_file
from explain.editor.server import EditorServer, EditorSession

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
RADIUS = 50  # display px; the 28 px map is shown at 448 px, 16 display px per map pixel


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, fmnist_pngs):
    """A private copy of the images and one edit store shared by the two tests, in order."""
    root = tmp_path_factory.mktemp("editor")
    shutil.copytree(fmnist_pngs, root / "imgs")
    return root


def open_editor(browser, model, workspace):
    session = EditorSession(model, EditStore(workspace / "edits"), [str(workspace / "imgs")],
                            progress=False)
    server = EditorServer(session).start()
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.set_default_timeout(90_000)  # generous: CI machines are shared and slow at times
    expect.set_options(timeout=90_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.goto(server.url)
    return session, server, page, errors


def stroke_cells(y: float, x0: float, x1: float, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Map pixels surely inside / surely outside a horizontal brush stroke (display px)."""
    c = (np.arange(28) + 0.5) * 16
    cy, cx = np.meshgrid(c, c, indexing="ij")
    dx = np.clip(cx, x0, x1) - cx
    d = np.hypot(dx, cy - y)
    return d < radius - 4, d > radius + 1


def test_remove_stroke_rescores_and_saves_only_the_painted_pixels(browser, tiny_abn, workspace):
    session, server, page, errors = open_editor(browser, tiny_abn, workspace)
    try:
        expect(page.locator("#status")).to_contain_text("no saved edit")
        expect(page.locator("#edited-topk")).not_to_have_attribute("data-scored", "0")
        ramp = page.evaluate("getComputedStyle(document.getElementById('ramp')).backgroundImage")
        assert ramp.startswith("linear-gradient") and "rgb(0, 0, 128)" in ramp  # jet's low end
        before = json.loads(page.get_attribute("#edited-topk", "data-topk"))
        seq = int(page.get_attribute("#edited-topk", "data-scored"))
        original_topk = json.loads(page.get_attribute("#original-topk", "data-topk"))
        assert before[0]["index"] == original_topk[0]["index"]  # unedited map: same answer
        assert abs(before[0]["probability"] - original_topk[0]["probability"]) < 0.01

        page.check("input[name=tool][value=remove]")
        page.locator("#radius").fill(str(RADIUS))
        box = page.locator("#canvas").bounding_box()
        y, x0, x1 = 224.0, 80.0, 368.0
        page.mouse.move(box["x"] + x0, box["y"] + y)
        page.mouse.down()
        for x in np.linspace(x0, x1, 10)[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.up()
        expect(page.locator("#edited-topk")).not_to_have_attribute("data-scored", str(seq))
        shown = json.loads(page.get_attribute("#edited-topk", "data-topk"))
        text = page.inner_text("#edited-topk")
        current = np.array(page.evaluate("window.editor.current()"), np.float32).reshape(28, 28)
        x = session.model.input.normalise(session.items[0].view)[None]
        with torch.no_grad():  # what the page shows is the perception branch run with M'
            probs = tiny_abn.net(x, att=torch.from_numpy(current)[None, None]).softmax(1)[0]
        assert shown[0]["index"] == int(probs.argmax())
        assert abs(shown[0]["probability"] - float(probs.max())) < 1e-4
        assert f"{shown[0]['name']} {100 * shown[0]['probability']:.2f}%" in text
        assert max(abs(a["probability"] - b["probability"]) for a, b in zip(shown, before)) > 1e-4

        page.click("#save")
        expect(page.locator("#status")).to_contain_text(f"saved {session.items[0].path.name}")
        edit = session.store.find(session.items[0].path)
        original = read_map_file(session.store.root / edit.original)
        edited = read_map_file(session.store.root / edit.edited)
        inside, outside = stroke_cells(y, x0, x1, RADIUS)
        assert inside.sum() > 20 and outside.sum() > 300
        assert edited[inside].max() == 0.0 and original[inside].min() > 0.0  # painted: removed
        assert np.array_equal(edited[outside], original[outside])           # others: unchanged
        changed = edited != original
        assert np.all(edited[changed] == 0.0)  # nothing but the stroke changed
        assert edit.label == session.items[0].label and edit.revision == 1

        # keyboard: next image, paint, and the arrow key back autosaves it
        page.keyboard.press("ArrowRight")
        expect(page.locator("#position")).to_contain_text("2 / 24")
        page.mouse.move(box["x"] + 100, box["y"] + 100)
        page.mouse.down()
        page.mouse.move(box["x"] + 140, box["y"] + 120)
        page.mouse.up()
        page.keyboard.press("ArrowLeft")
        expect(page.locator("#status")).to_contain_text("restored saved edit")
        expect(page.locator("#position")).to_contain_text("1 / 24")
        assert session.store.find(session.items[1].path) is not None
        assert errors == []
    finally:
        page.close()
        server.stop()


def test_reopening_restores_the_saved_edit(browser, tiny_abn, workspace):
    session, server, page, errors = open_editor(browser, tiny_abn, workspace)
    try:
        edit = session.store.find(session.items[0].path)
        assert edit is not None, "run after the painting test (same module, in order)"
        expect(page.locator("#status")).to_contain_text("restored saved edit (revision 1)")
        shown = np.array(page.evaluate("window.editor.current()"), np.float32).reshape(28, 28)
        saved = read_map_file(session.store.root / edit.edited)
        assert np.abs(shown - saved).max() < 1e-4 and (saved == 0).sum() > 20
        page.click("#reset")  # back to the model's own map, then undo brings the edit back
        original = read_map_file(session.store.root / edit.original)
        reset = np.array(page.evaluate("window.editor.current()"), np.float32).reshape(28, 28)
        assert np.abs(reset - original).max() < 1e-4
        page.keyboard.press("Control+z")
        undone = np.array(page.evaluate("window.editor.current()"), np.float32).reshape(28, 28)
        assert np.abs(undone - saved).max() < 1e-4
        assert errors == []
    finally:
        page.close()
        server.stop()
