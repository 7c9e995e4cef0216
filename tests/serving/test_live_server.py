"""A real `cliper serve` process: hostile traffic gets 4xx JSON while other clients keep being served,
the server imports no training code, and the page works in a real headless browser."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("uvicorn", reason="the serve extra is not installed")

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img" / "serving-page.png"
UPDATE_DOCS_IMG = "CLIPER_UPDATE_DOCS_SCREENSHOT"  # set to 1 to refresh the docs' screenshot


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_bundle):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from cliper.cli.main import main; main()", "serve", str(demo_bundle),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("server did not start: " + (proc.stdout.read() if proc.stdout else ""))
            time.sleep(0.2)
    yield base, port, proc
    proc.terminate()
    proc.wait(10)


def _get(base, path):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return r.status, json.loads(r.read())


def _raw(port: int, data: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send raw bytes, return (status, body) of the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                c = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not c:
                break
            chunks.append(c)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_hostile_requests_get_4xx_json_while_others_are_served(server):
    base, port, proc = server
    _, users = _get(base, "/v1/users?limit=5")
    uid = users["users"][0]["user_id"]
    good_path = f"/v1/users/{uid}/recommendations?k=10"
    stop = threading.Event()
    good = {"ok": 0, "bad": 0}

    def steady():
        while not stop.is_set():
            try:
                status, body = _get(base, good_path)
                good["ok" if status == 200 and len(body["items"]) == 10 else "bad"] += 1
            except Exception:
                good["bad"] += 1

    # many idle connections held open at once
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    worker = threading.Thread(target=steady)
    worker.start()
    try:
        hostile = [
            b"GET /v1/search?q=" + b"x" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /v1/items/..%2F..%2Fetc%2Fpasswd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /v1/items/../../etc/passwd/thumbnail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /v1/users/NOBODY/recommendations?k=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET " + good_path.replace("k=10", "k=1000000000").encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET " + good_path.replace("k=10", "k=-1").encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"POST /v1/recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\n"
            b"Connection: close\r\n\r\n{\"items\":",
            b"POST /v1/recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n"
            b"Connection: close\r\n\r\n{}",
            b"POST /v1/recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + (b"8000\r\n" + b"[" * 0x8000 + b"\r\n") * 3 + b"0\r\n\r\n",
        ]
        for _ in range(3):
            for req in hostile:
                status, body = _raw(port, req)
                assert 400 <= status < 500, (status, req[:80])
                assert json.loads(body)["error"]["status"] == status
    finally:
        stop.set()
        worker.join(30)
        for s in idle:
            s.close()
    assert good["bad"] == 0 and good["ok"] > 0, good
    assert proc.poll() is None
    status, body = _get(base, "/healthz")
    assert status == 200 and body["status"] == "ok"


def test_the_server_imports_no_training_code(demo_bundle):
    code = (
        "import sys; from cliper.cli import main, serve_cmds; from cliper.serving.app import create_app; "
        f"app = create_app({str(demo_bundle)!r}); "
        "from fastapi.testclient import TestClient; c = TestClient(app); "
        "assert c.get('/v1/search', params={'q': 'bottle'}).status_code == 200; "
        "uid = c.get('/v1/users').json()['users'][0]['user_id']; "
        "assert c.get(f'/v1/users/{uid}/recommendations').status_code == 200; "
        "bad = sorted(m for m in sys.modules if m.startswith(('cliper.training', 'cliper.models', 'cliper.serving.export', "
        "'cliper.evaluation', 'cliper.data', 'cliper.features'))); print(bad); assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="no chromium executable (CI installs Debian's chromium)")
def test_page_in_a_headless_browser(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, _, _ = server
    k = 8
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(base + "/", wait_until="networkidle")
            page.fill("#k-input", str(k))
            page.click("#user-form button")
            # locator waits, not wait_for_function: the page's CSP (rightly) forbids evaluating strings
            expect(page.locator("#recs .card")).to_have_count(k, timeout=30_000)
            page.wait_for_load_state("networkidle")
            loaded = page.eval_on_selector_all("#recs .card img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
            assert loaded == [True] * k
            assert page.locator("#history .card").count() > 0
            # click a recommendation: its similar items appear
            page.locator("#recs .card").first.click()
            expect(page.locator("#similar .card").first).to_be_visible(timeout=30_000)
            page.fill("#search-input", "pink striped bottle")
            page.click("#search-form button")
            expect(page.locator("#search .card").first).to_be_visible(timeout=30_000)
            page.wait_for_load_state("networkidle")
            shot = tmp_path / "serving-page.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert shot.stat().st_size > 10_000
    if os.environ.get(UPDATE_DOCS_IMG) == "1":  # opt-in: a test run never dirties the checkout by default
        DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMG)
