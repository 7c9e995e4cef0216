"""The HTTP API over a real exported run: the evaluator's top-K, raw ids, and 4xx JSON for hostile input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from cliper.serving.app import create_app  # noqa: E402
from cliper.serving.bundle import load_bundle  # noqa: E402


@pytest.fixture(scope="module")
def client(demo_bundle):
    return TestClient(create_app(demo_bundle), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def bundle(demo_bundle):
    return load_bundle(demo_bundle)


def _error(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()["error"]
    assert body["status"] == status and body["message"]
    return body


def test_user_top_k_equals_cliper_evaluate_save_topk(demo_run, client, bundle):
    from typer.testing import CliRunner

    from cliper.cli.main import app

    _, _, run = demo_run
    res = CliRunner().invoke(app, ["evaluate", str(run), "--split", "test", "--save-topk", "10"])
    assert res.exit_code == 0, res.output
    lists: dict[int, list[int]] = {}
    with open(run / "topk_test.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            lists.setdefault(int(row["user_id"]), []).append(int(row["item_id"]))
    assert len(lists) > 10
    for u, items in lists.items():
        r = client.get(f"/v1/users/{bundle.user_ids[u]}/recommendations", params={"k": 10})
        assert r.status_code == 200
        got = [it["item_id"] for it in r.json()["items"]]
        assert got == [bundle.item_ids[i] for i in items], u


def test_recommendations_carry_scores_metadata_and_exclude_history(client, bundle):
    uid = bundle.user_ids[3]
    body = client.get(f"/v1/users/{uid}/recommendations", params={"k": 20}).json()
    items = body["items"]
    assert len(items) == 20 and body["user_id"] == uid
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True)
    row = bundle.user_index[uid]
    assert np.allclose(scores, [float(bundle.items[bundle.item_index[it["item_id"]]] @ bundle.users[row]) for it in items],
                       atol=1e-5)
    history = {it["item_id"] for it in client.get(f"/v1/users/{uid}").json()["history"]}
    assert history and not history & {it["item_id"] for it in items}
    assert all(it["title"] and it["thumbnail"].startswith("/v1/items/") for it in items)
    with_seen = client.get(f"/v1/users/{uid}/recommendations", params={"k": 60, "exclude_seen": "false"}).json()
    assert history <= {it["item_id"] for it in with_seen["items"]}


def test_anonymous_user_is_folded_in_from_item_representations(client, bundle):
    given = bundle.item_ids[:3]
    body = client.post("/v1/recommendations", json={"items": given, "k": 5}).json()
    q = bundle.items[:3].mean(0)
    expect = [bundle.item_ids[i] for i in np.argsort(-(bundle.items @ q), kind="stable") if i >= 3][:5]
    assert [it["item_id"] for it in body["items"]] == expect and body["folded_in"] == 3
    r = client.post("/v1/recommendations", json={"items": [given[0], "NOPE"]})
    assert _error(r, 404)["id"] == "NOPE"


@pytest.mark.parametrize("space", ["model", "image", "text"])
def test_similar_items_by_cosine_in_each_space(client, bundle, space):
    iid = bundle.item_ids[7]
    body = client.get(f"/v1/items/{iid}/similar", params={"k": 5, "space": space}).json()
    mat = {"model": bundle.items, "image": bundle.clip_image, "text": bundle.clip_text}[space]
    unit = mat / np.linalg.norm(mat, axis=1, keepdims=True)
    s = unit @ unit[7]
    s[7] = -np.inf
    assert [it["item_id"] for it in body["items"]] == [bundle.item_ids[i] for i in np.argsort(-s, kind="stable")[:5]]


def test_search_ranks_items_by_the_clip_text_tower(client, bundle):
    from cliper.encoders.clip import ClipEncoder

    q = "pink striped bottle"
    body = client.get("/v1/search", params={"q": q, "k": 5}).json()
    enc = ClipEncoder.from_pretrained(bundle.encoder_path, device="cpu")
    v = enc.encode_texts([q])[0]
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    s = (unit(bundle.clip_image) + unit(bundle.clip_text)) / 2 @ v
    assert [it["item_id"] for it in body["items"]] == [bundle.item_ids[i] for i in np.argsort(-s, kind="stable")[:5]]


def test_search_without_an_encoder_is_a_clear_4xx(demo_run, tmp_path):
    from cliper.serving.export import export_run

    _, _, run = demo_run
    c = TestClient(create_app(export_run(run, tmp_path / "b", with_encoder=False)))
    body = _error(c.get("/v1/search", params={"q": "bottle"}), 409)
    assert "no CLIP encoder" in body["message"]
    assert c.get("/healthz").json()["search"]["available"] is False
    assert c.get(f"/v1/users/{load_bundle(tmp_path / 'b').user_ids[0]}/recommendations").status_code == 200


def test_item_and_thumbnail_come_from_the_bundle(client, bundle):
    iid = bundle.item_ids[2]
    body = client.get(f"/v1/items/{iid}").json()
    assert body["item_id"] == iid and body["title"] == bundle.metadata[2]["title"]
    r = client.get(body["thumbnail"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content == bundle.thumbnail(2)


@pytest.mark.parametrize("path", [
    "/v1/users/NOBODY/recommendations", "/v1/users/NOBODY", "/v1/items/NOPE", "/v1/items/NOPE/similar",
    "/v1/items/NOPE/thumbnail",
])
def test_unknown_ids_are_404_naming_the_id(client, path):
    body = _error(client.get(path), 404)
    assert body["id"] in ("NOBODY", "NOPE")


@pytest.mark.parametrize("k", ["0", "-1", str(10**9), "ten", "1.5", ""])
def test_bad_k_is_422(client, bundle, k):
    _error(client.get(f"/v1/users/{bundle.user_ids[0]}/recommendations", params={"k": k}), 422)
    _error(client.get("/v1/search", params={"q": "bottle", "k": k}), 422)


@pytest.mark.parametrize("path", [
    "/v1/items/../../etc/passwd", "/v1/items/..%2F..%2Fetc%2Fpasswd", "/v1/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd/thumbnail",
    "/v1/items/..%252F..%252Fetc%252Fpasswd/thumbnail", "/static/..%2F..%2Fbundle.py", "/static/%2e%2e/app.py",
    "/v1/users/%00/recommendations", "/etc/passwd",
])
def test_path_tricks_are_4xx_json_and_read_no_file(client, path):
    r = client.get(path)
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/json")
    assert b"root:" not in r.content and b"import" not in r.content


def test_oversized_and_malformed_requests(client, bundle):
    _error(client.get("/v1/search", params={"q": "x" * 60_000}), 413)  # over the query-string limit (1 MB: live test)
    _error(client.get("/v1/search", params={"q": "x" * 600}), 422)
    _error(client.get("/v1/search", params={"q": "   "}), 422)
    _error(client.get("/v1/search"), 422)
    _error(client.post("/v1/recommendations", content=b"x" * 100_000, headers={"content-type": "application/json"}), 413)
    _error(client.post("/v1/recommendations", content=b'{"items": [', headers={"content-type": "application/json"}), 422)
    _error(client.post("/v1/recommendations", json={"items": []}), 422)
    _error(client.post("/v1/recommendations", json={"items": "B00"}), 422)
    _error(client.post("/v1/recommendations", json={"items": [bundle.item_ids[0]] * 1001}), 422)
    _error(client.post("/v1/recommendations", json=[1, 2]), 422)
    _error(client.get(f"/v1/items/{bundle.item_ids[0]}/similar", params={"space": "../x"}), 422)
    _error(client.delete("/v1/items/x"), 405)
    long_id = "A" * 1500
    assert len(_error(client.get(f"/v1/users/{long_id}"), 404)["id"]) < 300  # errors do not echo megabytes


def test_health_metrics_docs_and_page(client):
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["index"]["kind"] == "exact" and h["search"]["available"] is True
    assert h["bundle"]["model"] == "vbpr" and len(h["bundle"]["dataset_sha256"]) == 64 and "path" not in h["bundle"]
    client.get("/v1/users/NOBODY")
    text = client.get("/metrics").text
    assert 'cliper_http_requests_total{method="GET",route="/v1/users/{user_id}",status="404"}' in text
    assert "cliper_http_request_duration_seconds_bucket" in text and "NOBODY" not in text  # labels are route templates
    assert client.get("/openapi.json").json()["paths"]["/v1/search"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "Content-Security-Policy" in page.headers
    assert "fetch(" in client.get("/static/app.js").text


def test_json_is_valid_for_unicode_ids_and_titles(tmp_path):
    from cliper.serving.bundle import BundleContent, write_bundle

    c = BundleContent(users=np.eye(2, dtype=np.float32), items=np.eye(2, dtype=np.float32), user_ids=["ü/ser", 'q"x'],
                      item_ids=["it em", "é#?"], seen_indptr=np.array([0, 0, 1]), seen_indices=np.array([0]),
                      metadata=[{"title": 'say "hi"\n'}, {"title": "日本"}])
    client = TestClient(create_app(write_bundle(c, tmp_path / "b")))
    from urllib.parse import quote

    body = client.get(f"/v1/users/{quote('ü/ser', safe='')}/recommendations", params={"k": 2})
    # an id with a slash cannot be addressed in a path segment: a JSON 404, never a crash
    assert body.status_code == 404
    body = client.get(f"/v1/users/{quote(chr(113) + chr(34) + 'x', safe='')}/recommendations", params={"k": 2}).json()
    assert [it["item_id"] for it in body["items"]] == ["é#?"]  # "it em" is seen
    thumb = json.loads(client.get(f"/v1/items/{quote('é#?', safe='')}").text)["thumbnail"]
    r = client.get(thumb)
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"


def test_fast_path_answers_exactly_as_the_fastapi_route(demo_bundle, client, bundle):
    slow = TestClient(create_app(demo_bundle, load_encoder=False, fast_path=False))
    for uid in bundle.user_ids[:5]:
        for qs in ("", "?k=7", "?k=7&exclude_seen=false", "?exclude_seen=0&k=3", "?k=1000", "?exclude_seen=YES"):
            path = f"/v1/users/{uid}/recommendations{qs}"
            fast, ref = client.get(path), slow.get(path)
            assert fast.status_code == ref.status_code == 200
            assert fast.content == ref.content and fast.headers["content-type"] == ref.headers["content-type"]
    # whatever the fast path does not take falls through to FastAPI's validation
    for qs in ("?k=07x", "?k=1001", "?exclude_seen=maybe", "?k=%FF", "?k=5&k=6", "?k=4&other=1"):
        path = f"/v1/users/{bundle.user_ids[0]}/recommendations{qs}"
        fast, ref = client.get(path), slow.get(path)
        assert fast.status_code == ref.status_code and fast.content == ref.content
        assert fast.status_code == (200 if "k=5" in qs or "other" in qs else 422)
    assert client.get("/v1/users/NOBODY/recommendations?k=3").json() == slow.get("/v1/users/NOBODY/recommendations?k=3").json()
    assert 'route="/v1/users/{user_id}/recommendations",status="200"' in client.get("/metrics").text


def test_a_faiss_bundle_serves_from_its_index_and_reports_recall(tmp_path):
    pytest.importorskip("faiss")
    from cliper.serving.bundle import BundleContent, write_bundle

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((30, 8)).astype(np.float32)
    items = (centres[rng.integers(0, 30, 3000)] + 0.3 * rng.standard_normal((3000, 8))).astype(np.float32)
    users = (centres[rng.integers(0, 30, 200)] + 0.3 * rng.standard_normal((200, 8))).astype(np.float32)
    seen = [np.sort(rng.choice(3000, 5, replace=False)) for _ in range(200)]
    c = BundleContent(users=users, items=items, user_ids=[f"u{i}" for i in range(200)],
                      item_ids=[f"i{i}" for i in range(3000)], seen_indptr=np.arange(0, 1001, 5),
                      seen_indices=np.concatenate(seen))
    out = write_bundle(c, tmp_path / "b", index="ivf", index_options={"k": 10, "target_recall": 0.9, "n_queries": 50})
    client = TestClient(create_app(out))
    h = client.get("/healthz").json()["index"]
    assert h["kind"] == "ivf" and h["recall"]["value"] >= 0.9 and h["params"]["nprobe"] >= 1
    hits = 0
    for u in range(20):
        got = [it["item_id"] for it in client.get(f"/v1/users/u{u}/recommendations", params={"k": 10}).json()["items"]]
        s = items @ users[u]
        s[seen[u]] = -np.inf
        truth = [f"i{i}" for i in np.argsort(-s)[:10]]
        assert not set(got) & {f"i{i}" for i in seen[u]} and len(got) == 10
        hits += len(set(got) & set(truth))
    assert hits / 200 >= 0.8
    exact = TestClient(create_app(out, index="exact"))
    assert exact.get("/healthz").json()["index"]["kind"] == "exact"
