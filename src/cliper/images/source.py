"""Where an item's image bytes come from: a local folder, a URL cache, or nowhere."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cliper.errors import ConfigError
from cliper.images.download import download_url
from cliper.images.load import MAX_IMAGE_BYTES, ImageFailure

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


@dataclass(frozen=True)
class ImageBytes:
    """Raw bytes of an item's image, their content hash, and where they came from."""

    data: bytes
    sha: str
    origin: str


def _bytes(data: bytes, origin: str) -> ImageBytes:
    return ImageBytes(data, hashlib.sha256(data).hexdigest()[:16], origin)


class ImageSource(Protocol):
    """``fetch`` returns the item's image bytes or why there are none."""

    description: str

    def fetch(self, item_id: int, key: str, urls: list[str]) -> ImageBytes | ImageFailure: ...

    def prefetch(self, requests: Iterable[tuple[int, str, list[str]]]) -> None: ...


class NoImageSource:
    """No images at all (text-only extraction): every item reports ``no_source``."""

    description = "none"

    def fetch(self, item_id: int, key: str, urls: list[str]) -> ImageBytes | ImageFailure:
        return ImageFailure("no_source")

    def prefetch(self, requests: Iterable[tuple[int, str, list[str]]]) -> None:
        return None


class LocalImageSource:
    """Images in one folder named by item id (``12.jpg``) or by key (``B00002JXFI.png``).

    Item-id names win when both exist. Any of :data:`IMAGE_SUFFIXES`, any case.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ConfigError(f"image folder {self.folder} does not exist")
        self.description = f"folder:{self.folder}"
        self._index: dict[str, Path] = {}
        for p in sorted(self.folder.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                self._index.setdefault(p.stem, p)

    def path_for(self, item_id: int, key: str) -> Path | None:
        return self._index.get(str(item_id)) or (self._index.get(key) if key else None)

    def fetch(self, item_id: int, key: str, urls: list[str]) -> ImageBytes | ImageFailure:
        p = self.path_for(item_id, key)
        if p is None:
            return ImageFailure("no_file")
        try:
            size = p.stat().st_size
            if size > MAX_IMAGE_BYTES:  # never read a huge file into memory
                return ImageFailure("too_large", f"{p}: {size} bytes (limit {MAX_IMAGE_BYTES})")
            return _bytes(p.read_bytes(), str(p))
        except OSError as exc:
            return ImageFailure("corrupt", f"unreadable: {exc}")

    def prefetch(self, requests: Iterable[tuple[int, str, list[str]]]) -> None:
        return None


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class UrlImageSource:
    """Images downloaded from the catalogue's URLs into ``cache_dir`` (kept across runs).

    A cached file is reused without touching the network. Downloads run in
    ``workers`` threads with a per-request ``timeout`` and ``retries``.
    """

    def __init__(self, cache_dir: str | Path, timeout: float = 10.0, retries: int = 2, workers: int = 8,
                 backoff: float = 0.5) -> None:
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.timeout, self.retries, self.workers, self.backoff = timeout, retries, workers, backoff
        self.description = f"url-cache:{self.cache_dir}"
        self.errors: dict[int, str] = {}
        self.downloads = 0

    def cache_path(self, item_id: int, key: str, url: str) -> Path:
        name = _SAFE.sub("_", key or str(item_id))[:80]
        suffix = Path(url.split("?", 1)[0]).suffix.lower()
        suffix = suffix if suffix in IMAGE_SUFFIXES else ".img"
        return self.cache_dir / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:10]}{suffix}"

    def _ensure(self, item_id: int, key: str, urls: list[str]) -> Path | None:
        last = "no URL"
        for url in urls:
            dest = self.cache_path(item_id, key, url)
            if dest.is_file():
                return dest
            err = download_url(url, dest, timeout=self.timeout, retries=self.retries, backoff=self.backoff)
            self.downloads += 1
            if err is None:
                return dest
            last = f"{url}: {err}"
        self.errors[item_id] = last
        return None

    def prefetch(self, requests: Iterable[tuple[int, str, list[str]]]) -> None:
        """Download every missing image of ``requests`` in parallel (call per chunk)."""
        todo = [r for r in requests if r[2] and not any(self.cache_path(r[0], r[1], u).is_file() for u in r[2])]
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            list(pool.map(lambda r: self._ensure(*r), todo))

    def fetch(self, item_id: int, key: str, urls: list[str]) -> ImageBytes | ImageFailure:
        if not urls:
            return ImageFailure("no_url")
        p = self._ensure(item_id, key, urls)
        if p is None:
            return ImageFailure("download_failed", self.errors.get(item_id, ""))
        try:
            return _bytes(p.read_bytes(), str(p))
        except OSError as exc:
            return ImageFailure("corrupt", f"unreadable: {exc}")


def make_image_source(spec: str | Path | None, cache_dir: str | Path | None = None, timeout: float = 10.0,
                      retries: int = 2) -> ImageSource:
    """``None``/``none`` -> no images; ``url`` -> download into ``cache_dir``; else a local folder."""
    if spec is None or str(spec).lower() == "none":
        return NoImageSource()
    if str(spec).lower() == "url":
        if cache_dir is None:
            raise ConfigError("--images url needs an image cache folder")
        return UrlImageSource(cache_dir, timeout=timeout, retries=retries)
    return LocalImageSource(spec)
