"""Image sources: local folder by id or key, corrupt files, and the downloader on 127.0.0.1 only."""

from __future__ import annotations

import http.server
import io
import threading
import time

import pytest
from PIL import Image

from cliper.images import ImageBytes, ImageFailure, LocalImageSource, UrlImageSource, decode_image, download_url
from cliper.images.source import make_image_source
from cliper.errors import ConfigError


def _png(color=(200, 10, 10), size=(20, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_local_source_by_item_id_or_key(tmp_path):
    (tmp_path / "7.png").write_bytes(_png((1, 2, 3)))
    (tmp_path / "B00X.JPG").write_bytes(_png((4, 5, 6)))
    (tmp_path / "8.png").write_bytes(_png((7, 8, 9)))
    (tmp_path / "B00Y.png").write_bytes(_png((9, 9, 9)))
    (tmp_path / "notes.txt").write_text("ignored")
    src = LocalImageSource(tmp_path)
    got = src.fetch(7, "ANY", [])
    assert isinstance(got, ImageBytes) and decode_image(got.data).getpixel((0, 0)) == (1, 2, 3)
    assert decode_image(src.fetch(3, "B00X", []).data).getpixel((0, 0)) == (4, 5, 6)
    assert decode_image(src.fetch(8, "B00Y", []).data).getpixel((0, 0)) == (7, 8, 9)  # item id wins
    assert src.fetch(9, "B00Z", []) == ImageFailure("no_file")
    with pytest.raises(ConfigError):
        LocalImageSource(tmp_path / "absent")


def test_corrupt_and_truncated_images_are_failures():
    assert decode_image(b"definitely not an image").reason == "corrupt"
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, format="JPEG")
    assert decode_image(buf.getvalue()[: len(buf.getvalue()) // 2]).reason == "corrupt"
    im = decode_image(_png())
    assert isinstance(im, Image.Image) and im.mode == "RGB"


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self):  # noqa: N802
        _Handler.hits[self.path] = _Handler.hits.get(self.path, 0) + 1
        if self.path.startswith("/ok"):
            body = _png()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/flaky") and _Handler.hits[self.path] >= 2:
            self.path = "/ok"
            self.do_GET()
        elif self.path.startswith("/slow"):
            time.sleep(1.0)
            self.send_response(200)
            self.end_headers()
        elif self.path.startswith(("/boom", "/flaky")):
            self.send_error(500)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_success_404_500_retry_and_timeout(server, tmp_path):
    assert download_url(f"{server}/ok/1.png", tmp_path / "a.png", timeout=2) is None
    assert decode_image((tmp_path / "a.png").read_bytes()).size == (20, 16)
    assert download_url(f"{server}/missing.png", tmp_path / "b.png", retries=3, backoff=0.01) == "HTTP 404"
    assert _Handler.hits["/missing.png"] == 1  # a 4xx answer is final
    assert download_url(f"{server}/boom.png", tmp_path / "c.png", retries=2, backoff=0.01) == "HTTP 500"
    assert _Handler.hits["/boom.png"] == 3  # retried
    assert download_url(f"{server}/flaky.png", tmp_path / "d.png", retries=2, backoff=0.01) is None
    err = download_url(f"{server}/slow.png", tmp_path / "e.png", timeout=0.2, retries=0)
    assert err is not None and not (tmp_path / "e.png").exists()
    assert not list(tmp_path.glob(".*.part"))


def test_url_source_caches_and_records_failures(server, tmp_path):
    src = make_image_source("url", cache_dir=tmp_path / "cache", timeout=2, retries=0)
    assert isinstance(src, UrlImageSource)
    reqs = [(0, "A0", [f"{server}/ok/a0.png"]), (1, "A1", [f"{server}/nope.png"]), (2, "A2", [])]
    src.prefetch(reqs)
    first = src.fetch(*reqs[0])
    assert isinstance(first, ImageBytes)
    assert src.fetch(*reqs[1]).reason == "download_failed"
    assert src.fetch(*reqs[2]).reason == "no_url"
    hits = _Handler.hits["/ok/a0.png"]
    again = UrlImageSource(tmp_path / "cache").fetch(*reqs[0])  # a new run: served from the cache
    assert again.sha == first.sha and _Handler.hits["/ok/a0.png"] == hits


def test_extraction_downloads_images_from_catalogue_urls(server, tmp_path):
    """Generic JSONL catalogue with URLs -> `images="url"`: downloads, caches, records failures."""
    import json

    from cliper.encoders.tiny import save_tiny_clip
    from cliper.features.extract import extract_features

    rows = [{"item_id": i, "name": f"Toy {i}", "pic": f"{server}/ok/{i}.png" if i != 2 else f"{server}/gone.png"}
            for i in range(4)]
    cat = tmp_path / "items.jsonl"
    cat.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    clip = save_tiny_clip(tmp_path / "clip")
    kw = dict(images="url", image_cache=tmp_path / "cache", catalog_format="jsonl", field_map={"title": "name"},
              image_field="pic", views="mmrec-text", device="cpu", progress=False, download_retries=0)
    res = extract_features(cat, tmp_path / "store", clip, **kw)
    assert res.store.image_mask.tolist() == [True, True, False, True]
    assert res.manifest["images"]["missing"] == [{"item_id": 2, "key": "", "reason": "download_failed"}]
    hits = dict(_Handler.hits)
    again = extract_features(cat, tmp_path / "store", clip, **kw)
    assert again.manifest["work"]["chunks_computed"] == 0
    assert all(_Handler.hits[k] == v for k, v in hits.items() if k.startswith("/ok/"))  # served from the cache
