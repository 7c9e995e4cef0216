"""The HTTP service: FastAPI routes that only call the bundle and the index.

Raw ids in and out (ASINs, reviewer ids), JSON under ``/v1``, a web page at ``/``,
``/healthz`` and Prometheus ``/metrics``. No route takes a file path from a request:
ids are looked up in the bundle's id maps, thumbnails come from the bundle's packed
bytes and the page from files read once at start. Imports no training code.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote

import numpy as np
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from cliper.serving.bundle import Bundle, load_bundle
from cliper.serving.index import ExactIndex, FaissIndex, top_k

log = logging.getLogger(__name__)

MAX_K = 1000
MAX_BODY = 64 * 1024  # bytes of a request body
MAX_QUERY_STRING = 8 * 1024  # bytes of a URL's query string
MAX_PATH = 2048
MAX_QUERY_CHARS = 512  # characters of a search query
MAX_FOLD_ITEMS = 1000
MAX_ID_ECHO = 200
JSON = "application/json"
PAGE_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
              "style.css": "text/css; charset=utf-8"}
PAGE_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'"


class ApiError(Exception):
    """A client error answered as ``{"error": {"status", "message", ...}}``."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def _echo(value: str) -> str:
    return value if len(value) <= MAX_ID_ECHO else value[:MAX_ID_ECHO] + "..."


def _error_body(status: int, message: str, **extra: Any) -> bytes:
    return json.dumps({"error": {"status": status, "message": message, **extra}}).encode()


def _json(doc: Any, status: int = 200) -> Response:
    return Response(json.dumps(doc, ensure_ascii=False).encode(), status_code=status, media_type=JSON)


class Service:
    """The bundle, its indexes and pre-serialised item fragments: what every route calls."""

    def __init__(self, bundle: Bundle, index: str = "bundle"):
        self.bundle = bundle
        self.exact = ExactIndex(bundle.items)
        doc = bundle.manifest.get("index") or {"kind": "exact"}
        if index not in ("bundle", "exact", doc.get("kind")):
            raise ValueError(f"the bundle holds a {doc.get('kind')!r} index, not {index!r}; "
                             "export it again with --index or serve with --index exact")
        self.index_doc = doc if index != "exact" else {"kind": "exact"}
        self.index = self.exact
        if self.index_doc["kind"] != "exact":
            self.index = FaissIndex.read(bundle.path / "index.faiss", self.index_doc, bundle.n_items)
        self._frags: list[bytes | None] = [None] * bundle.n_items
        self._spaces: dict[str, np.ndarray] = {}
        self._space_lock = threading.Lock()
        self.encoder = None
        self.encoder_error: str | None = None
        self._encode_lock = threading.Lock()
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    # -- items ---------------------------------------------------------------------
    def item_fragment(self, row: int) -> bytes:
        """The item's stored JSON line without its closing brace, plus its thumbnail URL (cached)."""
        frag = self._frags[row]
        if frag is None:
            line = self.bundle.item_lines[row]
            url = f"/v1/items/{quote(self.bundle.item_ids[row], safe='')}/thumbnail"
            frag = line.rstrip()[:-1] + b',"thumbnail":' + json.dumps(url).encode()
            self._frags[row] = frag
        return frag

    def items_json(self, rows: np.ndarray, scores: np.ndarray | None = None) -> bytes:
        if scores is None:
            return b"[" + b"},".join(self.item_fragment(int(r)) for r in rows) + (b"}]" if len(rows) else b"]")
        parts = [self.item_fragment(int(r)) + b',"score":' + repr(float(s)).encode() + b"}"
                 for r, s in zip(rows.tolist(), scores.tolist())]
        return b"[" + b",".join(parts) + b"]"

    def recommendations_body(self, user_id: str, row: int, k: int, exclude_seen: bool) -> bytes:
        """The JSON of ``GET /v1/users/{user_id}/recommendations`` (shared by the route and the fast path)."""
        b = self.bundle
        rows, scores = self.index.search(b.users[row], k, b.seen(row) if exclude_seen else None)
        return (b'{"user_id":' + json.dumps(user_id, ensure_ascii=False).encode() + b',"k":' + str(k).encode()
                + b',"index":"' + self.index.kind.encode() + b'","items":' + self.items_json(rows, scores) + b"}")

    def user_row(self, user_id: str) -> int:
        row = self.bundle.user_index.get(user_id)
        if row is None:
            raise ApiError(404, f"unknown user {_echo(user_id)!r}", id=_echo(user_id), kind="user")
        return row

    def item_row(self, item_id: str) -> int:
        row = self.bundle.item_index.get(item_id)
        if row is None:
            raise ApiError(404, f"unknown item {_echo(item_id)!r}", id=_echo(item_id), kind="item")
        return row

    # -- similarity spaces -----------------------------------------------------------
    def space(self, name: str) -> np.ndarray:
        """Unit-row item matrix of a space (model / image / text / search), built on first use."""
        got = self._spaces.get(name)
        if got is not None:
            return got
        with self._space_lock:
            if name in self._spaces:
                return self._spaces[name]
            b = self.bundle
            src = {"model": b.items, "image": b.clip_image, "text": b.clip_text}.get(name)
            if name == "search":
                parts = [self._unit(x) for x in (b.clip_image, self.text_for_search()) if x is not None]
                src = sum(parts) / len(parts) if parts else None
                self._spaces[name] = src
                return src
            if src is None:
                raise ApiError(422, f"the bundle has no {name} embeddings (it was exported from a run without "
                               "CLIP features)", space=name)
            self._spaces[name] = self._unit(src)
            return self._spaces[name]

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))

    def text_for_search(self) -> np.ndarray | None:
        """The fused text embeddings when they live in the encoder's space (not e.g. a concatenation)."""
        b = self.bundle
        enc = b.manifest.get("encoder") or {}
        if b.clip_text is not None and b.clip_text.shape[1] == enc.get("dim", -1):
            return b.clip_text
        return None

    # -- the CLIP text tower ---------------------------------------------------------
    def load_encoder(self) -> None:
        """Load the bundle's CLIP folder (already hash-verified) for text search."""
        path = self.bundle.encoder_path
        if path is None:
            self.encoder_error = "this bundle has no CLIP encoder (the run used no feature store)"
            return
        if self.bundle.clip_image is None and self.text_for_search() is None:
            self.encoder_error = "this bundle has no CLIP item embeddings to search"
            return
        try:
            import torch

            from cliper.encoders.clip import ClipEncoder

            torch.set_num_threads(1)
            info = self.bundle.manifest["encoder"]
            self.encoder = ClipEncoder.from_pretrained(path, device="cpu", local_files_only=True,
                                                       long_text=info.get("long_text", "truncate"), batch_size=1)
        except Exception as exc:  # a broken encoder disables search, never the server
            log.warning("text search disabled: %s", exc)
            self.encoder_error = f"the bundle's encoder could not be loaded: {exc}".splitlines()[0]

    def encode_query(self, q: str) -> np.ndarray:
        if self.encoder is None:
            raise ApiError(409 if self.bundle.encoder_path is None else 503, self.encoder_error or "search unavailable")
        with self._encode_lock:  # tokenizers are not safe to share across threads
            hit = self._query_cache.get(q)
            if hit is not None:
                self._query_cache.move_to_end(q)
                return hit
            vec = self.encoder.encode_texts([q])[0].astype(np.float32)
            self._query_cache[q] = vec
            if len(self._query_cache) > 1024:
                self._query_cache.popitem(last=False)
            return vec

    def health(self) -> dict[str, Any]:
        m = self.bundle.manifest
        return {
            "status": "ok",
            "bundle": _provenance(m),
            "users": self.bundle.n_users,
            "items": self.bundle.n_items,
            "dim": int(self.bundle.items.shape[1]),
            "index": self.index_doc,
            "search": {"available": self.encoder is not None, "reason": self.encoder_error},
            "has": m.get("has"),
        }


def _provenance(m: dict[str, Any]) -> dict[str, Any]:
    """What /healthz tells about a bundle: provenance and hashes, not the training machine's paths."""
    src = m.get("source") or {}
    store = src.get("feature_store") or {}
    return {"format": m.get("format"), "created": m.get("created"), "cliper_version": m.get("cliper_version"),
            "model": src.get("model"), "dataset": (src.get("dataset") or {}).get("name"),
            "dataset_sha256": (src.get("dataset") or {}).get("sha256"),
            "feature_store_manifest_sha256": store.get("manifest_sha256"), "best_epoch": src.get("best_epoch"),
            "generated": src.get("generated", False)}


class Guard:
    """ASGI middleware: size limits (413), counts and latency histograms, a JSON 500 of last resort,
    and the fast path of the hottest route (see :func:`fast_recommendations`)."""

    def __init__(self, app, metrics: "Metrics", service: "Service | None" = None):
        self.app = app
        self.metrics = metrics
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        state = {"status": 500, "started": False}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
            await send(message)

        async def reject(status: int, message: str):
            body = _error_body(status, message)
            await send_wrapper({"type": "http.response.start", "status": status,
                                "headers": [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]})
            await send_wrapper({"type": "http.response.body", "body": body})

        try:
            declared = _content_length(scope)
            if len(scope.get("query_string", b"")) > MAX_QUERY_STRING:
                await reject(413, f"query string over {MAX_QUERY_STRING} bytes")
            elif len(scope.get("raw_path") or scope.get("path", "").encode()) > MAX_PATH:
                await reject(413, f"path over {MAX_PATH} bytes")
            elif declared is not None and declared > MAX_BODY:
                await reject(413, f"request body over {MAX_BODY} bytes")
            elif self.service is not None and (body := fast_recommendations(self.service, scope)) is not None:
                scope["route"] = FAST_ROUTE
                await send_wrapper({"type": "http.response.start", "status": 200,
                                    "headers": [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]})
                await send_wrapper({"type": "http.response.body", "body": body})
            else:
                received = 0

                async def receive_limited():
                    nonlocal received
                    message = await receive()
                    if message["type"] == "http.request":
                        received += len(message.get("body", b""))
                        if received > MAX_BODY:
                            raise _TooLarge()
                    return message

                try:
                    await self.app(scope, receive_limited, send_wrapper)
                except _TooLarge:
                    if not state["started"]:
                        await reject(413, f"request body over {MAX_BODY} bytes")
        except Exception:  # nothing a client sends takes the server down
            log.exception("unhandled error on %s", scope.get("path"))
            if not state["started"]:
                await reject(500, "internal error")
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope.get("method", ""), name, state["status"], time.perf_counter() - t0)


class _TooLarge(Exception):
    pass


_FAST_PATH = re.compile(r"/v1/users/([^/]+)/recommendations")
_TRUE, _FALSE = {"true", "1", "yes", "on", "t", "y"}, {"false", "0", "no", "off", "f", "n"}


class _FastRoute:
    path = "/v1/users/{user_id}/recommendations"  # the same metrics label as the FastAPI route


FAST_ROUTE = _FastRoute()


def fast_recommendations(svc: "Service", scope) -> bytes | None:
    """The body of a plain, valid ``GET /v1/users/{id}/recommendations`` of a known user, or None.

    Skips FastAPI's routing and parameter machinery on the hottest route (about half a
    request's CPU). Anything unusual (unknown user, odd or repeated parameters, a bad k)
    returns None and takes the FastAPI route, so every error keeps one source.
    """
    if scope.get("method") != "GET":
        return None
    m = _FAST_PATH.fullmatch(scope.get("path", ""))
    if m is None:
        return None
    row = svc.bundle.user_index.get(m.group(1))
    if row is None:
        return None
    k, exclude = 20, True
    qs = scope.get("query_string", b"")
    if qs:
        try:
            params = parse_qsl(qs.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return None
        names = [n for n, _ in params]
        if len(set(names)) != len(names) or not set(names) <= {"k", "exclude_seen"}:
            return None
        for name, value in params:
            if name == "k":
                if not value.isdigit() or not 1 <= int(value) <= MAX_K:
                    return None
                k = int(value)
            else:
                v = value.lower()
                if v not in _TRUE and v not in _FALSE:
                    return None
                exclude = v in _TRUE
    return svc.recommendations_body(m.group(1), row, k, exclude)


def _content_length(scope) -> int | None:
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return MAX_BODY + 1  # unparseable: treat as oversized
    return None


class Metrics:
    """Prometheus counters and histograms in the app's own registry (one per app, so tests can build many)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("cliper_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("cliper_http_request_duration_seconds", "Request latency by route template",
                                 ["route"], registry=self.registry,
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _page_files() -> dict[str, bytes]:
    root = resources.files("cliper.serving") / "static"
    return {name: (root / name).read_bytes() for name in PAGE_FILES}


def create_app(bundle: Bundle | str | Path, index: str = "bundle", load_encoder: bool = True,
               fast_path: bool = True) -> FastAPI:
    """The FastAPI app for a bundle (a loaded :class:`Bundle` or a bundle folder, verified on load)."""
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    svc = Service(bundle, index=index)
    if load_encoder:
        svc.load_encoder()
    else:
        svc.encoder_error = "text search disabled for this server"
    page = _page_files()
    metrics = Metrics()
    app = FastAPI(title="cliper serving", version=str(bundle.manifest.get("cliper_version")),
                  description="Recommendations, similar items and text search from a cliper serving bundle.")
    app.state.service = svc
    app.add_middleware(Guard, metrics=metrics, service=svc if fast_path else None)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return Response(_error_body(exc.status, exc.message, **exc.extra), status_code=exc.status, media_type=JSON)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = [{"where": ".".join(str(x) for x in e.get("loc", ())), "message": e.get("msg", "")}
                    for e in exc.errors()[:10]]
        return Response(_error_body(422, "invalid request: " + "; ".join(f"{p['where']}: {p['message']}" for p in problems),
                                    problems=problems), status_code=422, media_type=JSON)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        msg = "no such route" if exc.status_code == 404 else str(exc.detail)
        return Response(_error_body(exc.status_code, msg), status_code=exc.status_code, media_type=JSON)

    # -- page ------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index_page():
        return Response(page["index.html"], media_type=PAGE_FILES["index.html"], headers={"Content-Security-Policy": PAGE_CSP})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in page:  # a fixed set read at start: no path from the request reaches the filesystem
            raise ApiError(404, f"unknown page file {_echo(name)!r}", id=_echo(name))
        return Response(page[name], media_type=PAGE_FILES[name], headers={"Cache-Control": "max-age=300"})

    # -- operations --------------------------------------------------------------------
    @app.get("/healthz", tags=["operations"])
    async def healthz():
        """Liveness plus what the bundle holds and the index's measured recall."""
        return _json(svc.health())

    @app.get("/metrics", tags=["operations"])
    async def prometheus():
        """Request counts and latency histograms in Prometheus text format."""
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    # -- users -------------------------------------------------------------------------
    @app.get("/v1/users", tags=["users"])
    async def list_users(offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=1000)):
        """A page of known user ids (for pickers)."""
        b = bundle
        ids = b.user_ids[offset:offset + limit]
        counts = np.diff(b.seen_indptr[offset:offset + len(ids) + 1]).tolist()
        return _json({"total": b.n_users, "offset": offset,
                      "users": [{"user_id": u, "n_seen": c} for u, c in zip(ids, counts)]})

    @app.get("/v1/users/{user_id}", tags=["users"])
    async def user(user_id: str, limit: int = Query(50, ge=0, le=MAX_K)):
        """A user's history: the train items the bundle excludes from their recommendations."""
        row = svc.user_row(user_id)
        seen = bundle.seen(row)
        body = (b'{"user_id":' + json.dumps(user_id).encode() + b',"n_seen":' + str(seen.size).encode()
                + b',"history":' + svc.items_json(seen[:limit]) + b"}")
        return Response(body, media_type=JSON)

    @app.get("/v1/users/{user_id}/recommendations", tags=["recommendations"])
    async def recommend(user_id: str, k: int = Query(20, ge=1, le=MAX_K), exclude_seen: bool = True):
        """Top-k items for a known user by the model's score, their train items excluded by default."""
        return Response(svc.recommendations_body(user_id, svc.user_row(user_id), k, exclude_seen), media_type=JSON)

    @app.post("/v1/recommendations", tags=["recommendations"])
    async def recommend_anonymous(
        items: list[str] = Body(..., embed=True, min_length=1, max_length=MAX_FOLD_ITEMS,
                                description="Item ids the (new or anonymous) user interacted with."),
        k: int = Body(20, embed=True, ge=1, le=MAX_K),
        exclude_given: bool = Body(True, embed=True),
    ):
        """Top-k for a user the bundle does not know: their vector is the mean of the given items'
        model representations (a fold-in), scored like a known user."""
        rows = np.array(sorted({svc.item_row(i) for i in items}), dtype=np.int64)
        query = bundle.items[rows].mean(axis=0)
        top, scores = svc.index.search(query, k, rows if exclude_given else None)
        body = (b'{"k":' + str(k).encode() + b',"folded_in":' + str(rows.size).encode()
                + b',"items":' + svc.items_json(top, scores) + b"}")
        return Response(body, media_type=JSON)

    # -- items -------------------------------------------------------------------------
    @app.get("/v1/items/{item_id}", tags=["items"])
    async def item(item_id: str):
        """An item's metadata and thumbnail URL."""
        return Response(svc.item_fragment(svc.item_row(item_id)) + b"}", media_type=JSON)

    @app.get("/v1/items/{item_id}/thumbnail", tags=["items"])
    async def thumbnail(item_id: str):
        """The item's JPEG thumbnail from the bundle, or an SVG placeholder when it has none."""
        row = svc.item_row(item_id)
        data = bundle.thumbnail(row)
        headers = {"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"}
        if data:
            return Response(data, media_type="image/jpeg", headers=headers)
        return Response(_placeholder_svg(row), media_type="image/svg+xml", headers=headers)

    @app.get("/v1/items/{item_id}/similar", tags=["items"])
    def similar(item_id: str, k: int = Query(20, ge=1, le=MAX_K),
                space: Literal["model", "image", "text"] = "model"):
        """Items most similar to this one by cosine: in the model's item space, or CLIP image / fused text."""
        row = svc.item_row(item_id)
        mat = svc.space(space)
        s = mat @ mat[row]
        s[row] = -np.inf
        rows = top_k(s, k)
        body = (b'{"item_id":' + json.dumps(item_id).encode() + b',"space":"' + space.encode() + b'","items":'
                + svc.items_json(rows, s[rows]) + b"}")
        return Response(body, media_type=JSON)

    @app.get("/v1/search", tags=["search"])
    def search(q: str = Query(..., min_length=1, max_length=MAX_QUERY_CHARS), k: int = Query(20, ge=1, le=MAX_K)):
        """Text-to-item search: the query through the bundle's CLIP text tower, matched by cosine against
        the items' CLIP image embeddings averaged with their fused text embeddings."""
        if not q.strip():
            raise ApiError(422, "empty query")
        vec = svc.encode_query(q)
        mat = svc.space("search")
        if mat is None or mat.shape[1] != vec.shape[0]:
            raise ApiError(409, "the bundle's item embeddings are not in the encoder's space")
        s = mat @ vec
        rows = top_k(s, k)
        body = (b'{"q":' + json.dumps(q, ensure_ascii=False).encode() + b',"items":' + svc.items_json(rows, s[rows]) + b"}")
        return Response(body, media_type=JSON)

    return app


ENV_BUNDLE, ENV_INDEX, ENV_SEARCH = "CLIPER_SERVE_BUNDLE", "CLIPER_SERVE_INDEX", "CLIPER_SERVE_SEARCH"


def app_from_env() -> FastAPI:
    """App factory for multi-worker uvicorn (each worker verifies and loads the bundle named by the environment)."""
    import os

    return create_app(os.environ[ENV_BUNDLE], index=os.environ.get(ENV_INDEX, "bundle"),
                      load_encoder=os.environ.get(ENV_SEARCH, "1") == "1")


_COLOURS = ("#c9d6df", "#f3d1c4", "#d8e2c1", "#e4d3ee", "#f6e7b5", "#cfe3e8")


def _placeholder_svg(row: int) -> bytes:
    colour = _COLOURS[row % len(_COLOURS)]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128" viewBox="0 0 128 128">'
            f'<rect width="128" height="128" fill="{colour}"/><text x="64" y="70" font-size="13" '
            f'text-anchor="middle" fill="#555" font-family="sans-serif">no image</text></svg>').encode()
