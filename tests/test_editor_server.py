"""The editor server refuses every bad request with the right status and a clear message:
through Flask's test client, and over real HTTP for what a hostile page could send."""
from __future__ import annotations

import errno
import http.client
import json
import re
import threading

import numpy as np
import pytest
import torch
from flask.testing import FlaskClient

import explain.edits as edits_mod
from explain.edits import EditStore, model_maps
from explain.editor.server import EditorServer, EditorSession, create_app

TOKEN = "test-token-123"
PORT = 8765
ORIGIN = f"http://127.0.0.1:{PORT}"


class PageClient(FlaskClient):
    """Addresses requests as the editor's page does: to 127.0.0.1 on the server's port."""

    def open(self, *args, **kw):
        kw.setdefault("base_url", ORIGIN)
        return super().open(*args, **kw)


def page_client(session, **kw) -> FlaskClient:
    app = create_app(session, TOKEN, PORT, **kw)
    app.test_client_class = PageClient
    return app.test_client()


@pytest.fixture
def session(tiny_abn, fmnist_pngs, tmp_path) -> EditorSession:
    return EditorSession(tiny_abn, EditStore(tmp_path / "edits"), [str(fmnist_pngs)], progress=False)


@pytest.fixture
def client(session):
    return page_client(session, max_body=64 << 10)


def auth(**kw) -> dict:
    return {"headers": {"X-Explain-Token": TOKEN}, **kw}


def post(client, url, body, raw=False):
    data = body if raw else json.dumps(body)
    return client.post(url, data=data, content_type="application/json",
                       headers={"X-Explain-Token": TOKEN, "Origin": ORIGIN})


@pytest.mark.parametrize("url", ["/", "/api/queue", "/api/item/0", "/image/0", "/static/app.js",
                                 "/no/such/page"])
def test_missing_or_wrong_token_is_403(client, url):
    assert client.get(url).status_code == 403
    assert client.get(url, headers={"X-Explain-Token": "wrong"}).status_code == 403
    assert client.get(url + "?token=" + TOKEN[:-1]).status_code == 403


def test_post_without_token_is_403_and_saves_nothing(client, session):
    r = client.post("/api/save/0", data=json.dumps({"map": [0.0] * 784}),
                    content_type="application/json")
    assert r.status_code == 403 and session.store.entries() == {}


def test_token_in_query_or_header_is_accepted(client):
    assert client.get("/?token=" + TOKEN).status_code == 200
    page = client.get("/", **auth()).get_data(as_text=True)
    assert TOKEN in page and "app.js" in page
    assert client.get("/static/app.js", **auth()).status_code == 200


@pytest.mark.parametrize("url", [
    "/static/../server.py", "/static/..%2fserver.py", "/static/%2e%2e/server.py",
    "/static/%2e%2e%2f%2e%2e%2fedits.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
    "//etc/passwd", "/../../etc/passwd", "/static/nope.js", "/image/999", "/api/item/24",
    "/image/-1", "/server.py", "/edits/manifest.json"])
def test_paths_outside_the_served_files_are_404(client, url):
    r = client.get(url, **auth())
    assert r.status_code == 404, (url, r.status_code)
    assert b"def " not in r.data and b"root:" not in r.data


def test_oversized_body_is_413(client, session):
    r = post(client, "/api/save/0", b'{"map": [' + b"0.5," * 40000 + b"0.5]}", raw=True)
    assert r.status_code == 413 and session.store.entries() == {}


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[0.5, 0.5]", "expected a JSON object"),
    (b'{"map": "abc"}', "expected a JSON object"),
    (json.dumps({"map": [0.5] * 783}).encode(), "map has 783 values; expected 784 (28x28"),
    (json.dumps({"map": [0.5] * 783 + [1.5]}).encode(), "within [0, 1]"),
    (json.dumps({"map": [0.5] * 783 + ["x"]}).encode(), "within [0, 1]"),
    (b'{"map": [' + b"0.5," * 783 + b"NaN]}", "within [0, 1]"),
    (json.dumps({"map": [0.5] * 784, "label": 10}).encode(), "label must be a class index 0..9"),
    (json.dumps({"map": [0.5] * 784, "label": "bag"}).encode(), "label must be a class index"),
])
def test_malformed_requests_are_400_with_a_message(client, session, body, message):
    for url in ("/api/score/0", "/api/save/0") if "label" not in message else ("/api/save/0",):
        r = post(client, url, body, raw=True)
        assert r.status_code == 400, (url, r.status_code, r.data)
        assert message in r.get_json()["error"]
    assert session.store.entries() == {}


def test_score_reruns_the_perception_branch_with_the_edited_map(client, session):
    edited = np.zeros((28, 28), np.float32)
    r = post(client, "/api/score/3", {"map": edited.ravel().tolist()})
    assert r.status_code == 200
    x = session.model.input.normalise(session.items[3].view)[None]
    with torch.no_grad():
        probs = session.model.net(x, att=torch.zeros(1, 1, 28, 28)).softmax(1)[0]
    top = r.get_json()["topk"]
    assert top[0]["index"] == int(probs.argmax())
    assert abs(top[0]["probability"] - float(probs.max())) < 1e-5
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)


def test_save_then_item_restores_the_edit(client, session):
    item = client.get("/api/item/2", **auth()).get_json()
    original = np.array(item["original"], np.float32)
    edited = original.copy()
    edited[5:9, 5:9] = 0.0
    r = post(client, "/api/save/2", {"map": edited.ravel().tolist(), "label": 1})
    assert r.status_code == 200 and r.get_json()["revision"] == 1
    again = client.get("/api/item/2", **auth()).get_json()
    assert again["revision"] == 1 and again["warning"] is None
    assert np.abs(np.array(again["edited"]) - edited).max() < 1e-4
    assert session.store.find(session.items[2].path).label == 1
    assert [q["edited"] for q in client.get("/api/queue", **auth()).get_json()].count(True) == 1


def test_concurrent_saves_leave_one_valid_file(session):
    maps = [np.full(784, v, np.float32).tolist() for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    codes = []

    def save(c, m):
        for _ in range(4):
            codes.append(post(c, "/api/save/0", {"map": m}).status_code)
    # the apps are built here: werkzeug compiles routes thread-unsafely (a thread that built
    # its own app sometimes died in Rule.compile, and its 4 saves were missing)
    threads = [threading.Thread(target=save, args=(page_client(session), m)) for m in maps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 20
    (edit,) = session.store.entries().values()
    m = session.store.load(edit)[1]
    assert edit.revision == 20 and np.ptp(m) == 0
    assert min(abs(float(m[0, 0]) - v) for v in (0.0, 0.25, 0.5, 0.75, 1.0)) < 1e-4


def test_edit_from_another_model_is_flagged_not_applied(client, session):
    it = session.items[1]
    original = np.zeros((28, 28), np.float32)
    session.store.save(it.path, "someone-else@0000", None, original, original)
    item = client.get("/api/item/1", **auth()).get_json()
    assert item["edited"] is None and "someone-else@0000" in item["warning"]


def test_queue_puts_misclassified_then_least_confident_first(session):
    x = torch.stack([session.model.input.normalise(it.view) for it in session.items])
    _, probs = model_maps(session.model, x)
    labels = torch.tensor([it.label for it in session.items])
    wrong = probs.argmax(1) != labels
    truth = probs[torch.arange(len(labels)), labels]
    keys = list(zip((~wrong).tolist(), truth.tolist()))
    assert all(labels >= 0) and keys == sorted(keys)
    assert {it.path.parent.name for it in session.items} == {"bag", "sneaker", "trouser"}


@pytest.fixture
def server(session):
    server = EditorServer(session).start()
    yield server
    server.stop()


def request(server, method, url, body=b"", **headers):
    """A real HTTP request to `server`; (status, headers, JSON body or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server.server_port, timeout=60)
    try:
        conn.request(method, url, body, headers={"X-Explain-Token": server.token, **headers})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    is_json = resp.getheader("Content-Type", "").startswith("application/json")
    return resp.status, resp, json.loads(data) if is_json else None


def test_a_page_elsewhere_cannot_write_even_with_the_token(server, session):
    port = server.server.server_port
    here, local = f"127.0.0.1:{port}", f"localhost:{port}"
    body = json.dumps({"map": [0.25] * 784}).encode()
    refused = [  # (headers, status, message)
        ({"Origin": "https://evil.example", "Content-Type": "application/json"}, 403,
         "cross-site"),
        ({"Origin": "https://evil.example", "Content-Type": "text/plain"}, 403, "cross-site"),
        ({"Origin": f"http://{here}", "Content-Type": "text/plain"}, 415, "application/json"),
        ({"Origin": f"http://{here}", "Content-Type": "application/x-www-form-urlencoded"},
         415, "application/json"),
        ({"Content-Type": "application/json"}, 403, "cross-site"),  # no Origin, no Referer
        ({"Origin": "null", "Content-Type": "application/json"}, 403, "cross-site"),
        ({"Referer": "https://evil.example/page", "Content-Type": "application/json"}, 403,
         "cross-site"),
        ({"Referer": f"http://{here}.evil.example/", "Content-Type": "application/json"}, 403,
         "cross-site"),
        ({"Origin": f"http://{local}", "Content-Type": "application/json"}, 403,
         "cross-site"),  # another origin than the one addressed
        ({"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}",
          "Content-Type": "application/json"}, 403, "Host"),  # DNS rebinding
        ({"Host": f"127.0.0.1:{port + 1}", "Origin": f"http://127.0.0.1:{port + 1}",
          "Content-Type": "application/json"}, 403, "Host"),
    ]
    for headers, status, message in refused:
        code, resp, data = request(server, "POST", "/api/save/0", body, **headers)
        assert (code, message in data["error"]) == (status, True), (headers, code, data)
        assert resp.getheader("Referrer-Policy") == "no-referrer"
    assert session.store.entries() == {}
    code, _, data = request(server, "GET", "/api/queue", Host=f"evil.example:{port}")
    assert code == 403 and "Host" in data["error"]
    accepted = [{"Origin": f"http://{here}"}, {"Referer": f"http://{here}/?token=x"},
                {"Host": local, "Origin": f"http://{local}"}]
    for i, headers in enumerate(accepted):
        code, resp, data = request(server, "POST", "/api/save/0", body,
                                **{"Content-Type": "application/json; charset=utf-8", **headers})
        assert code == 200 and data["revision"] == i + 1, (headers, code, data)
        assert resp.getheader("Referrer-Policy") == "no-referrer"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/?token=" + server.token)
    resp = conn.getresponse()
    page = resp.read().decode()
    conn.close()
    assert resp.status == 200 and resp.getheader("Referrer-Policy") == "no-referrer"
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links and all("//" not in u and not u.startswith("/") for u in links), links


def test_deeply_nested_json_is_a_400_not_a_crash(server, session):
    for url in ("/api/score/0", "/api/save/0"):
        body = b'{"map": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        code, _, data = request(server, "POST", url, body, Origin=server.url.split("/?")[0],
                             **{"Content-Type": "application/json"})
        assert code == 400 and "nested too deeply" in data["error"], (url, code, data)
    assert session.store.entries() == {}
    code, _, _ = request(server, "GET", "/api/queue")
    assert code == 200  # still serving


def test_a_full_disk_on_save_is_reported_not_a_traceback(server, session, monkeypatch):
    def disk_full(path, data, fsync=True):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(edits_mod, "atomic_write_bytes", disk_full)
    code, _, data = request(server, "POST", "/api/save/0", json.dumps({"map": [0.5] * 784}).encode(),
                         Origin=server.url.split("/?")[0], **{"Content-Type": "application/json"})
    assert code == 507 and "No space left on device" in data["error"]
    assert str(session.store.root / "maps") in data["error"]
    assert session.store.entries() == {}
