"""The gallery page in headless Chromium, opened from disk (file://): rows and columns, images
that load, filters and sort that change what is shown, an error row, enlarging a row."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from explain.gallery.build import Options, build_gallery
from explain.gallery.inputs import collect
from explain.gallery.writer import Style

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")


@pytest.fixture(scope="module")
def gallery(fmnist_pngs, tmp_path_factory, tiny_abn_dir) -> Path:
    from explain.registry import create_model
    root = tmp_path_factory.mktemp("browser") / "in"
    shutil.copytree(fmnist_pngs, root)
    (root / "trouser" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    out = root.parent / "gallery"
    opts = Options(methods=["abn", "gradcam"], style=Style(28), workers=1, batch_size=8,
                   progress=False, title="FMNIST sample")
    build_gallery(create_model(str(tiny_abn_dir)), collect(str(root)), out, opts)
    return out


@pytest.fixture(scope="module")
def page(gallery):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        pg = browser.new_page(viewport={"width": 1200, "height": 900})
        pg.set_default_timeout(120_000)  # shared CI machines can be very slow
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("requestfailed", lambda r: errors.append(r.url))
        pg.goto((gallery / "index.html").as_uri())
        pg.wait_for_selector("#rows tr")
        yield pg
        assert not errors, errors
        browser.close()


def shown_ids(page) -> list[str]:
    return page.eval_on_selector_all("#rows tr", "trs => trs.map(t => t.dataset.id)")


def choose(page, select: str, value: str) -> None:
    page.select_option(select, value)
    page.wait_for_function("() => document.querySelector('#count').textContent.length > 0")


@pytest.fixture(scope="module")
def rows(gallery) -> dict[str, dict]:
    return {r["id"]: r for r in json.loads((gallery / "manifest.json").read_text())["rows"]}


def test_rows_and_columns(page, rows):
    headers = page.eval_on_selector_all("#head th", "ths => ths.map(t => t.textContent)")
    assert headers == ["#", "image", "input", "abn", "gradcam", "prediction"]
    assert shown_ids(page) == list(rows)  # input order
    assert page.text_content("#count") == "showing 25 of 25"
    assert "FMNIST sample" in page.title()
    tiles = page.eval_on_selector_all("#rows tr:first-child td.tile img", "is => is.length")
    assert tiles == 3


def test_images_load_from_disk(page):
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # lazy ones further down
    page.wait_for_function("""() => [...document.querySelectorAll('#rows img')]
        .every(i => i.complete && i.naturalWidth > 0)""")
    n = page.eval_on_selector_all("#rows img", "is => is.filter(i => i.naturalWidth === 28).length")
    assert n == 24 * 3
    page.evaluate("window.scrollTo(0, 0)")


def test_corrupt_image_is_an_error_row(page, rows):
    error = page.locator("#rows tr.error")
    assert error.count() == 1
    assert "corrupt.png" in error.inner_text()
    assert "truncated or corrupt" in error.inner_text() or "not a readable" in error.inner_text()
    choose(page, "#status", "error")
    assert shown_ids(page) == [i for i, r in rows.items() if r["error"]]
    choose(page, "#status", "")


def test_filters_change_what_is_shown(page, rows):
    choose(page, "#truth", "bag")
    assert set(shown_ids(page)) == {i for i, r in rows.items() if r["truth"] == "bag"}
    assert len(shown_ids(page)) == 8
    choose(page, "#truth", "")
    page.fill("#q", "sneaker_3")
    assert [rows[i]["name"] for i in shown_ids(page)] == ["sneaker/sneaker_3.png"]
    page.fill("#q", "")
    correct = {i for i, r in rows.items() if r["correct"]}
    choose(page, "#status", "incorrect")
    assert set(shown_ids(page)) == {i for i, r in rows.items() if r["correct"] is False}
    choose(page, "#status", "correct")
    assert set(shown_ids(page)) == correct
    choose(page, "#status", "")
    label = next(r["label"] for r in rows.values() if r["label"])
    choose(page, "#pred", label)
    assert set(shown_ids(page)) == {i for i, r in rows.items() if r["label"] == label}
    choose(page, "#pred", "")
    assert len(shown_ids(page)) == 25


def test_sort_by_confidence(page, rows):
    choose(page, "#sort", "conf-asc")
    ids = shown_ids(page)
    probs = [rows[i]["prob"] for i in ids if not rows[i]["error"]]
    assert probs == sorted(probs) and ids != list(rows)
    assert rows[ids[-1]]["error"]  # unreadable rows go last
    choose(page, "#sort", "conf-desc")
    probs = [rows[i]["prob"] for i in shown_ids(page) if not rows[i]["error"]]
    assert probs == sorted(probs, reverse=True)
    choose(page, "#sort", "index")
    assert shown_ids(page) == list(rows)


def test_click_enlarges_a_row(page, rows):
    first = next(iter(rows.values()))
    page.click("#rows tr:first-child td.tile img")
    assert page.is_visible("#modal")
    page.wait_for_function("""() => [...document.querySelectorAll('#modal img')]
        .every(i => i.complete && i.naturalWidth > 0)""")
    srcs = page.eval_on_selector_all("#modal img", "is => is.map(i => i.getAttribute('src'))")
    assert srcs == [first["files"][k] for k in ("input", "abn", "gradcam")]
    assert first["name"] in page.inner_text("#modal .info")
    page.keyboard.press("ArrowRight")
    assert list(rows.values())[1]["name"] in page.inner_text("#modal .info")
    page.keyboard.press("Escape")
    assert not page.is_visible("#modal")


def test_page_needs_no_server(gallery):
    """Everything the page uses is inline or a relative file path."""
    html = (gallery / "index.html").read_text()
    assert "http://" not in html and "https://" not in html and "fetch(" not in html
    assert "<script src" not in html and "<link" not in html
