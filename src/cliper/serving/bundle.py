"""The serving bundle: everything a server needs, in safetensors + JSON, verified on load.

A bundle folder holds::

    manifest.json            provenance, sizes, index settings and the sha256 of every other file
    embeddings.safetensors   users [U, d], items [I, d] float32 (score = users[u] @ items.T);
                             seen_indptr [U+1] / seen_indices: each user's train items (CSR);
                             optional clip_image [I, e], clip_text [I, t] (unit rows);
                             optional thumb_offsets [I+1] into thumbnails.bin
    ids.json                 raw user and item ids (e.g. reviewer ids and ASINs), by row
    items.jsonl              one compact JSON object per item row: item_id and metadata (title, brand,
                             categories) when the run had it; served as is, never re-serialised
    thumbnails.bin           concatenated JPEG thumbnails, or absent
    index.faiss              a faiss index over the items (``index.kind`` ivf / hnsw), or absent
    encoder/                 the CLIP folder (config, safetensors weights, tokenizer), or absent

Nothing here unpickles: arrays come from safetensors, everything else is JSON, and a
bundle whose files do not match the manifest's hashes (or that holds unlisted files) is
refused before any of it is parsed. This module imports no training code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cliper import __version__
from cliper.errors import CliperError

FORMAT = "cliper-serving-bundle/1"
MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.safetensors"
IDS = "ids.json"
ITEMS = "items.jsonl"
THUMBNAILS = "thumbnails.bin"
INDEX = "index.faiss"
ENCODER_DIR = "encoder"
METADATA_FIELDS = ("title", "brand", "categories")


class BundleError(CliperError):
    """A bundle that is missing, incomplete, or does not match its manifest."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class BundleContent:
    """What a bundle holds, in memory; :func:`write_bundle` turns it into a folder."""

    users: np.ndarray
    items: np.ndarray
    user_ids: list[str]
    item_ids: list[str]
    seen_indptr: np.ndarray
    seen_indices: np.ndarray
    metadata: list[dict[str, Any]] | None = None
    thumbnails: list[bytes | None] | None = None
    clip_image: np.ndarray | None = None
    clip_text: np.ndarray | None = None
    encoder_dir: Path | None = None
    encoder_info: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Shapes and id maps agree; a bundle that would rank the wrong rows is never written."""
        u, i = self.users, self.items
        if u.ndim != 2 or i.ndim != 2 or u.shape[1] != i.shape[1]:
            raise BundleError(f"embeddings must be [U, d] and [I, d], got {u.shape} and {i.shape}")
        if len(self.user_ids) != u.shape[0] or len(self.item_ids) != i.shape[0]:
            raise BundleError(f"id maps ({len(self.user_ids)} users, {len(self.item_ids)} items) do not match "
                              f"the embeddings ({u.shape[0]}, {i.shape[0]})")
        for what, ids in (("user", self.user_ids), ("item", self.item_ids)):
            if len(set(ids)) != len(ids):
                raise BundleError(f"{what} ids are not unique")
        if self.seen_indptr.shape != (u.shape[0] + 1,) or int(self.seen_indptr[-1]) != self.seen_indices.size:
            raise BundleError("seen items are not a CSR matrix over the users")
        if self.seen_indices.size and (self.seen_indices.min() < 0 or self.seen_indices.max() >= i.shape[0]):
            raise BundleError("seen items index outside the item range")
        for name, arr in (("clip_image", self.clip_image), ("clip_text", self.clip_text)):
            if arr is not None and (arr.ndim != 2 or arr.shape[0] != i.shape[0]):
                raise BundleError(f"{name} must have one row per item, got {arr.shape}")
        for name, lst in (("metadata", self.metadata), ("thumbnails", self.thumbnails)):
            if lst is not None and len(lst) != i.shape[0]:
                raise BundleError(f"{name} must have one entry per item, got {len(lst)}")
        if not (np.isfinite(u).all() and np.isfinite(i).all()):
            raise BundleError("embeddings contain NaN or infinite values")


def write_bundle(content: BundleContent, output: str | Path, index: str = "exact", index_options: dict | None = None,
                 overwrite: bool = False) -> Path:
    """Write ``content`` to ``output`` atomically: built in a sibling temp folder, then renamed.

    ``index`` is ``exact`` or a faiss kind (``ivf``, ``hnsw``); a faiss index is built here
    and its recall@K against exact search measured and written to the manifest.
    """
    from safetensors.numpy import save_file

    content.validate()
    out = Path(output)
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists; choose another --output or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        arrays: dict[str, np.ndarray] = {
            "users": np.ascontiguousarray(content.users, dtype=np.float32),
            "items": np.ascontiguousarray(content.items, dtype=np.float32),
            "seen_indptr": np.ascontiguousarray(content.seen_indptr, dtype=np.int64),
            "seen_indices": np.ascontiguousarray(content.seen_indices, dtype=np.int64),
        }
        for name in ("clip_image", "clip_text"):
            arr = getattr(content, name)
            if arr is not None:
                arrays[name] = np.ascontiguousarray(arr, dtype=np.float32)
        if content.thumbnails is not None:
            sizes = np.array([0 if t is None else len(t) for t in content.thumbnails], dtype=np.int64)
            arrays["thumb_offsets"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            with open(tmp / THUMBNAILS, "wb") as fh:
                for t in content.thumbnails:
                    if t:
                        fh.write(t)
        save_file(arrays, str(tmp / EMBEDDINGS))
        _write_json(tmp / IDS, {"users": list(map(str, content.user_ids)), "items": list(map(str, content.item_ids))})
        with open(tmp / ITEMS, "w", encoding="utf-8") as fh:  # json.dumps escapes newlines: one line per item
            for j, item_id in enumerate(content.item_ids):
                meta = _clean_meta(content.metadata[j]) if content.metadata is not None else {}
                fh.write(json.dumps({"item_id": str(item_id), **meta}, ensure_ascii=False, separators=(",", ":")) + "\n")
        index_doc: dict[str, Any] = {"kind": "exact"}
        if index != "exact":
            from cliper.serving.index import build_faiss_index

            index_doc = build_faiss_index(arrays["items"], arrays["users"], arrays["seen_indptr"],
                                          arrays["seen_indices"], index, tmp / INDEX, **(index_options or {}))
        encoder = None
        if content.encoder_dir is not None:
            shutil.copytree(content.encoder_dir, tmp / ENCODER_DIR)
            encoder = {"folder": ENCODER_DIR, **(content.encoder_info or {})}
        files = {p.relative_to(tmp).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {
            "format": FORMAT,
            "cliper_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": content.source,
            "n_users": int(content.users.shape[0]),
            "n_items": int(content.items.shape[0]),
            "dim": int(content.items.shape[1]),
            "score": "dot(users[u], items[i])",
            "has": {"metadata": content.metadata is not None, "thumbnails": content.thumbnails is not None,
                    "clip_image": content.clip_image is not None, "clip_text": content.clip_text is not None,
                    "encoder": encoder is not None},
            "encoder": encoder,
            "index": index_doc,
            "files": files,
        }
        _write_json(tmp / MANIFEST, manifest, indent=2)
        if out.exists():
            old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _clean_meta(m: dict[str, Any] | None) -> dict[str, Any]:
    m = m or {}
    return {k: m.get(k) for k in METADATA_FIELDS if m.get(k) not in (None, "", [])}


def _write_json(path: Path, doc: Any, indent: int | None = None) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=indent, separators=None if indent else (",", ":"))
        fh.flush()
        os.fsync(fh.fileno())


@dataclass
class Bundle:
    """A loaded, verified bundle: arrays, id maps and metadata, ready for the index and the app."""

    path: Path
    manifest: dict[str, Any]
    users: np.ndarray
    items: np.ndarray
    seen_indptr: np.ndarray
    seen_indices: np.ndarray
    user_ids: list[str]
    item_ids: list[str]
    item_lines: list[bytes]
    clip_image: np.ndarray | None
    clip_text: np.ndarray | None
    thumb_offsets: np.ndarray | None
    thumbnails: bytes | None
    user_index: dict[str, int] = field(default_factory=dict)
    item_index: dict[str, int] = field(default_factory=dict)

    @property
    def has_metadata(self) -> bool:
        return bool((self.manifest.get("has") or {}).get("metadata"))

    @property
    def metadata(self) -> list[dict[str, Any]] | None:
        """Per-item metadata dicts (parsed on demand: the server sends the stored lines as they are)."""
        if not self.has_metadata:
            return None
        out = []
        for line in self.item_lines:
            doc = json.loads(line)
            doc.pop("item_id", None)
            out.append(doc)
        return out

    @property
    def n_users(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.items.shape[0])

    def seen(self, user: int) -> np.ndarray:
        return self.seen_indices[self.seen_indptr[user]:self.seen_indptr[user + 1]]

    def thumbnail(self, item: int) -> bytes | None:
        if self.thumbnails is None or self.thumb_offsets is None:
            return None
        a, b = int(self.thumb_offsets[item]), int(self.thumb_offsets[item + 1])
        return self.thumbnails[a:b] if b > a else None

    @property
    def encoder_path(self) -> Path | None:
        enc = self.manifest.get("encoder")
        return self.path / ENCODER_DIR if enc else None


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """The manifest, after checking every file's size and sha256 and that no file is unlisted."""
    root = Path(path)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"{root} is not a serving bundle folder")
    if not mpath.is_file():
        raise BundleError(f"{root} has no {MANIFEST}: not a serving bundle, or an unfinished one")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath}: not a {FORMAT} manifest")
    files = manifest.get("files")
    if not isinstance(files, dict) or not {EMBEDDINGS, IDS, ITEMS} <= set(files):
        raise BundleError(f"{mpath}: manifest lists no {EMBEDDINGS}, {IDS} or {ITEMS}")
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}
    present.discard(MANIFEST)
    extra = sorted(present - set(files))
    missing = sorted(set(files) - present)
    if missing:
        raise BundleError(f"bundle {root} is missing {missing[:5]} listed in its manifest")
    if extra:
        raise BundleError(f"bundle {root} holds files its manifest does not list: {extra[:5]}")
    for name, info in files.items():
        p = root / name
        if p.is_symlink() or not p.resolve().is_relative_to(root.resolve()):
            raise BundleError(f"bundle file {name} is a link or lies outside the bundle")
        if p.stat().st_size != info.get("bytes") or sha256_file(p) != info.get("sha256"):
            raise BundleError(f"bundle file {name} does not match its manifest hash: the bundle was changed or "
                              "damaged; export it again")
    return manifest


def load_bundle(path: str | Path) -> Bundle:
    """Verify, then read a bundle (safetensors and JSON only; nothing is unpickled)."""
    from safetensors.numpy import load_file

    root = Path(path)
    manifest = verify_bundle(root)
    arrays = load_file(str(root / EMBEDDINGS))
    ids = json.loads((root / IDS).read_text(encoding="utf-8"))
    lines = (root / ITEMS).read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    thumbs = (root / THUMBNAILS).read_bytes() if (root / THUMBNAILS).is_file() else None
    b = Bundle(
        path=root, manifest=manifest,
        users=np.ascontiguousarray(arrays["users"], dtype=np.float32),
        items=np.ascontiguousarray(arrays["items"], dtype=np.float32),
        seen_indptr=arrays["seen_indptr"], seen_indices=arrays["seen_indices"],
        user_ids=[str(x) for x in ids["users"]], item_ids=[str(x) for x in ids["items"]],
        item_lines=lines, clip_image=arrays.get("clip_image"), clip_text=arrays.get("clip_text"),
        thumb_offsets=arrays.get("thumb_offsets"),
        thumbnails=thumbs if thumbs is not None or "thumb_offsets" not in arrays else b"",
    )
    if len(b.user_ids) != b.n_users or len(b.item_ids) != b.n_items or b.seen_indptr.shape != (b.n_users + 1,):
        raise BundleError(f"bundle {root}: id maps or seen items do not match the embeddings")
    if len(lines) != b.n_items:
        raise BundleError(f"bundle {root}: {ITEMS} has {len(lines)} lines for {b.n_items} items")
    b.user_index = {u: j for j, u in enumerate(b.user_ids)}
    b.item_index = {i: j for j, i in enumerate(b.item_ids)}
    return b
