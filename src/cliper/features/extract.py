"""``extract_features``: catalogue + images -> a feature store folder (CLIPER's front half).

The work is split into chunks of ``chunk_size`` items. Each chunk's result is
written to ``<output>/chunks/chunk_<index>_<key>.npz`` (temp file + atomic rename)
where ``key`` hashes the encoder fingerprint, the chunk's view texts and image
bytes. A killed run (even ``kill -9``) restarted with the same arguments reuses
every finished chunk; a re-run with unchanged texts and images recomputes nothing
(``manifest["work"]["chunks_computed"] == 0``); changing one item recomputes only
its chunk. The final arrays are assembled from the chunks, and ``manifest.json``
is written last.

Missing-image rule (``missing_image``):
- ``global_text`` (default): the image row is the item's ``global`` view embedding
  (or the normalised mean of its views when there is no ``global`` view) -- a unit
  vector in the same CLIP space, so cosine kNN graphs built from ``image.npy`` stay
  finite;
- ``zeros``: an all-zero row (beware: MMRec-style cosine normalisation divides by 0).
Either way ``image_mask`` is False and ``similarity`` is 0.0 for that item, so
similarity-attention fusion gives its views equal weight (softmax of zeros).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cliper import __version__, faults
from cliper.catalog import CatalogResult, load_id_map, read_catalog
from cliper.encoders.base import Encoder, l2_normalise
from cliper.errors import ConfigError, DataError
from cliper.features import finished
from cliper.features.store import (
    MANIFEST,
    FeatureStore,
    atomic_save_npy,
    atomic_save_npz,
    atomic_write_text,
)
from cliper.images import ImageBytes, ImageFailure, NoImageSource, decode_image, make_image_source
from cliper.outputs import holding_output
from cliper.views import ViewSet, build_views, load_view_set

log = logging.getLogger(__name__)

MISSING_IMAGE_RULES = ("global_text", "zeros")
STORE_FORMAT = "cliper-feature-store/1"
_TEXT_CACHE_LIMIT = 50_000


def content_hash(text: str | bytes, n: int = 16) -> str:
    """Short sha256 hex digest (the cache key unit)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:n]


@dataclass
class ExtractResult:
    """The opened store, its manifest, and this run's work counters."""

    store: FeatureStore
    manifest: dict[str, Any]
    work: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        m = self.manifest
        return (
            f"{m['n_items']} items x {len(m['views']['names'])} views (dim {m['dim']}); "
            f"images: {m['images']['n_real']} encoded, {m['images']['n_missing']} missing; "
            f"{m['catalog']['skipped_lines']} malformed catalogue lines skipped; "
            f"{len(m['items_missing_from_catalog'])} items not in the catalogue; "
            f"chunks computed {m['work']['chunks_computed']}, reused {m['work']['chunks_reused']}; "
            f"{m['timings_s']['total']:.1f} s"
        )


@holding_output("output")
def extract_features(
    catalog: str | Path | CatalogResult,
    output: str | Path,
    encoder: str | Path | Encoder,
    *,
    id_map: str | Path | Mapping[str, int] | None = None,
    images: str | Path | Any | None = None,
    image_cache: str | Path | None = None,
    views: ViewSet | str | Path | None = None,
    catalog_format: str = "auto",
    key_field: str | None = None,
    field_map: Mapping[str, str] | None = None,
    image_field: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    dtype: str | None = None,
    long_text: str = "truncate",
    chunk_size: int = 256,
    missing_image: str = "global_text",
    download_timeout: float = 10.0,
    download_retries: int = 2,
    progress: bool = True,
    on_chunk: Callable[[int, int, bool], None] | None = None,
    force: bool = False,
) -> ExtractResult:
    """Extract multi-view CLIP features for every item id into ``output``.

    Args:
        catalog: catalogue file (see :func:`cliper.catalog.read_catalog`) or an
            already read :class:`~cliper.catalog.CatalogResult`.
        output: the feature-store folder (created; resumed if unfinished).
        encoder: a hub id / local folder (loaded with ``device``, ``dtype``,
            ``long_text``, ``batch_size``) or a ready :class:`~cliper.encoders.base.Encoder`.
        id_map: ``asin<TAB>itemID`` file or dict. Rows are item ids ``0..max id``;
            ids absent from the catalogue get all-"missing" views. Without an id
            map, records must carry ``itemID`` and N = largest id + 1.
        images: a folder (files named by item id or key), ``"url"`` (download the
            catalogue's URLs into ``image_cache``, default ``<output>/image_cache``),
            an image source object, or None (text only).
        views: a :class:`~cliper.views.ViewSet`, a preset name, a YAML spec path, or
            None for the paper's five views.
        long_text: ``truncate`` or ``window`` (token windows averaged).
        chunk_size: items per resumable chunk.
        missing_image: ``global_text`` or ``zeros`` (module docstring).
        on_chunk: called ``(chunk_index, n_chunks, computed)`` after each chunk is saved.
        force: replace a finished store made with other inputs (else that is refused,
            :mod:`cliper.features.finished`). The output folder is held exclusively.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if missing_image not in MISSING_IMAGE_RULES:
        raise ConfigError(f"missing-image rule {missing_image!r} must be one of {', '.join(MISSING_IMAGE_RULES)}")
    if chunk_size < 1 or batch_size < 1:
        raise ConfigError("chunk size and batch size must be positive")
    out = Path(output)
    chunks_dir = out / "chunks"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob(".*.tmp")) + list(chunks_dir.glob(".*.tmp")):
        stale.unlink(missing_ok=True)  # leftovers of a killed write; never read
    view_set = views if isinstance(views, ViewSet) else load_view_set(views)

    # -- catalogue and item universe
    t = time.perf_counter()
    mapping = load_id_map(id_map) if isinstance(id_map, (str, Path)) else id_map
    if isinstance(catalog, CatalogResult):
        cat = catalog
    else:
        cat = read_catalog(catalog, catalog_format, mapping, key_field=key_field, field_map=field_map,
                           image_field=image_field)
    if mapping:
        n_items = max(mapping.values()) + 1
        key_of = {i: k for k, i in mapping.items()}
        outside = [i for i in cat.items if i >= n_items]
        if outside:
            raise DataError(f"item ids {outside[:5]} exceed the id map's range 0..{n_items - 1}")
    else:
        if not cat.items:
            raise DataError("no items read from the catalogue", cat.path)
        n_items = max(cat.items) + 1
        key_of = {}
    for i, item in cat.items.items():
        key_of.setdefault(i, item.key)
    missing_from_catalog = [i for i in range(n_items) if i not in cat.items]
    timings["read_catalog"] = time.perf_counter() - t

    # -- views
    t = time.perf_counter()
    texts = [build_views(cat.items[i].fields if i in cat.items else None, view_set) for i in range(n_items)]
    text_hashes = [[content_hash(s) for s in row] for row in texts]
    timings["views"] = time.perf_counter() - t

    # -- encoder and images
    t = time.perf_counter()
    if isinstance(encoder, (str, Path)):
        from cliper.encoders import load_encoder

        enc = load_encoder(encoder, device=device, long_text=long_text, batch_size=batch_size, dtype=dtype)
    else:
        enc = encoder
    timings["load_encoder"] = time.perf_counter() - t
    if images is None or isinstance(images, (str, Path)):
        source = make_image_source(images, image_cache or out / "image_cache", download_timeout, download_retries)
    else:
        source = images
    if not enc.supports_images and not isinstance(source, NoImageSource):
        log.warning("%s is text-only: images are ignored", enc.id)
        source = NoImageSource()

    fingerprint = enc.fingerprint()
    kept = finished.check_before_encoding(
        out, force, fingerprint=fingerprint, view_names=view_set.names,
        templates={v.name: v.template for v in view_set.views}, missing_image=missing_image, n_items=n_items,
        text_hashes=text_hashes)
    global_idx = view_set.names.index("global") if "global" in view_set.names else None
    V, d, N = len(view_set.names), enc.dim, n_items
    views_arr = np.zeros((V, N, d), np.float32)
    image_arr = np.zeros((N, d), np.float32)
    mask = np.zeros(N, bool)
    reasons = np.full(N, "", dtype=object)
    image_hashes: list[str | None] = [None] * N
    work = dict(chunks=0, chunks_computed=0, chunks_reused=0, texts_encoded=0, images_encoded=0)
    stats0 = enc.stats.as_dict()
    text_cache: dict[str, np.ndarray] = {}
    t_images = t_encode = 0.0

    starts = list(range(0, N, chunk_size))
    chunk_keys: list[str] = []
    bar = _progress(N, progress)
    for c, start in enumerate(starts):
        ids = list(range(start, min(start + chunk_size, N)))
        t = time.perf_counter()
        reqs = [(i, key_of.get(i, ""), cat.items[i].image_urls if i in cat.items else []) for i in ids]
        source.prefetch(reqs)
        fetched = [source.fetch(*r) for r in reqs]
        t_images += time.perf_counter() - t
        img_keys = [f.sha if isinstance(f, ImageBytes) else f"missing:{f.reason}" for f in fetched]
        key = content_hash(json.dumps([STORE_FORMAT, fingerprint, missing_image, view_set.names, ids[0], ids[-1],
                                       [text_hashes[i] for i in ids], img_keys]), 20)
        kept = finished.check_chunk(out, kept, c, key, chunk_size, force)
        chunk_keys.append(key)
        path = chunks_dir / f"chunk_{c:06d}_{key}.npz"
        chunk = _load_chunk(path, V, len(ids), d)
        computed = chunk is None
        if computed:
            t = time.perf_counter()
            chunk = _compute_chunk(enc, [texts[i] for i in ids], fetched, text_cache, global_idx, missing_image,
                                   batch_size, work)
            t_encode += time.perf_counter() - t
            atomic_save_npz(path, **chunk)
            work["chunks_computed"] += 1
        else:
            work["chunks_reused"] += 1
        for other in chunks_dir.glob(f"chunk_{c:06d}_*.npz"):
            if other != path:
                other.unlink(missing_ok=True)  # an outdated version of this chunk
        sl = slice(ids[0], ids[-1] + 1)
        views_arr[:, sl] = chunk["views"]
        image_arr[sl] = chunk["image"]
        mask[sl] = chunk["mask"]
        reasons[sl] = chunk["reasons"]
        for j, i in enumerate(ids):
            if chunk["mask"][j]:
                image_hashes[i] = img_keys[j]
        work["chunks"] += 1
        bar.update(len(ids))
        if on_chunk is not None:
            on_chunk(c, len(starts), computed)
        faults.kill_point("extract.chunk")
    bar.close()
    for stale in chunks_dir.glob("chunk_*.npz"):
        if int(stale.name.split("_")[1]) >= len(starts):
            stale.unlink(missing_ok=True)
    timings["images_fetch"] = t_images
    timings["encode"] = t_encode

    # -- assemble and write (manifest last; removed first so a half-written store never looks finished)
    finished.check_images(out, kept, image_hashes, force)
    t = time.perf_counter()
    similarity = np.einsum("vnd,nd->nv", views_arr, image_arr).astype(np.float32)
    similarity[~mask] = 0.0
    (out / MANIFEST).unlink(missing_ok=True)
    atomic_save_npy(out / "views.npy", views_arr)
    atomic_save_npy(out / "image.npy", image_arr)
    atomic_save_npy(out / "image_mask.npy", mask)
    atomic_save_npy(out / "similarity.npy", similarity)
    atomic_save_npy(out / "item_ids.npy", np.arange(N, dtype=np.int64))
    faults.kill_point("extract.arrays")
    timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start
    stats = {k: v - stats0.get(k, 0) for k, v in enc.stats.as_dict().items()}
    work.update(text_forwards=stats["text_forwards"], image_forwards=stats["image_forwards"],
                truncated_texts=stats["truncated_texts"], windowed_texts=stats["windowed_texts"],
                forward_s=round(stats["forward_s"], 4))
    manifest = _manifest(enc, view_set, cat, mapping, id_map, N, d, missing_from_catalog, source, missing_image,
                         mask, reasons, key_of, texts, text_hashes, image_hashes, work, timings, chunk_size)
    manifest["chunk_keys"] = chunk_keys  # what finished.check_chunk compares on a later run
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
    return ExtractResult(FeatureStore.open(out), manifest, work)


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="item", desc="extract", disable=not enabled, dynamic_ncols=True)


def _load_chunk(path: Path, V: int, k: int, d: int) -> dict[str, np.ndarray] | None:
    """A finished chunk, or None when absent or unusable (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            chunk = {name: z[name] for name in ("views", "image", "mask", "reasons")}
    except Exception as exc:  # a damaged file from outside this program: recompute it
        log.warning("%s: unreadable chunk (%s); recomputing", path, exc)
        return None
    if chunk["views"].shape != (V, k, d) or chunk["image"].shape != (k, d) or chunk["mask"].shape != (k,):
        return None
    return chunk


def _compute_chunk(enc: Encoder, texts: list[list[str]], fetched: list, text_cache: dict[str, np.ndarray],
                   global_idx: int | None, missing_rule: str, batch_size: int, work: dict[str, int]) -> dict[str, np.ndarray]:
    k, V, d = len(texts), len(texts[0]), enc.dim
    todo = list(dict.fromkeys(s for row in texts for s in row if s not in text_cache))
    if todo:
        if len(text_cache) + len(todo) > _TEXT_CACHE_LIMIT:
            text_cache.clear()
        for s, e in zip(todo, enc.encode_texts(todo, batch_size=batch_size)):
            text_cache[s] = e
        work["texts_encoded"] += len(todo)
    views = np.stack([np.stack([text_cache[row[v]] for row in texts]) for v in range(V)]).astype(np.float32)

    image = np.zeros((k, d), np.float32)
    mask = np.zeros(k, bool)
    reasons = [""] * k
    decoded, where = [], []
    for j, f in enumerate(fetched):
        if isinstance(f, ImageFailure):
            reasons[j] = f.reason
            continue
        im = decode_image(f.data)
        if isinstance(im, ImageFailure):
            reasons[j] = im.reason
            log.warning("item image %s: %s", f.origin, im.detail)
            continue
        decoded.append(im)
        where.append(j)
    if decoded:
        image[where] = enc.encode_images(decoded, batch_size=batch_size)
        mask[where] = True
        work["images_encoded"] += len(decoded)
    if missing_rule == "global_text":
        fill = views[global_idx] if global_idx is not None else l2_normalise(views.mean(axis=0))
        image[~mask] = fill[~mask]
    return {"views": views, "image": image, "mask": mask, "reasons": np.array(reasons, dtype=str)}


def _manifest(enc, view_set: ViewSet, cat: CatalogResult, mapping, id_map, N: int, d: int, missing_from_catalog,
              source, missing_rule: str, mask, reasons, key_of, texts, text_hashes, image_hashes, work, timings,
              chunk_size: int) -> dict[str, Any]:
    missing = [{"item_id": i, "key": key_of.get(i, ""), "reason": str(reasons[i])} for i in np.flatnonzero(~mask).tolist()]
    by_reason: dict[str, int] = {}
    for m in missing:
        by_reason[m["reason"]] = by_reason.get(m["reason"], 0) + 1
    return {
        "format": STORE_FORMAT,
        "cliper_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "encoder": {
            "id": enc.id,
            "kind": "clip" if enc.supports_images else "text",
            "fingerprint": enc.fingerprint(),
            "dim": d,
            "max_text_length": enc.max_text_length,
            "long_text": getattr(enc, "long_text", "truncate"),
            "device": str(getattr(enc, "device", "")),
            "dtype": str(getattr(enc, "dtype", "")),
        },
        "n_items": N,
        "dim": d,
        "views": {
            "names": view_set.names,
            "templates": {v.name: v.template for v in view_set.views},
            "fields": {v.name: list(v.fields) for v in view_set.views},
            "global_views": [v.name for v in view_set.views if v.is_global],
            "missing_value": view_set.missing_value,
            "spec": view_set.name,
        },
        "catalog": {
            "path": cat.path,
            "format": cat.fmt,
            "records": cat.lines_read,
            "items": len(cat.items),
            "skipped_lines": cat.n_skipped,
            "skipped": [{"line": s.line, "reason": s.reason} for s in cat.skipped[:1000]],
            "unmapped": cat.unmapped,
            "duplicates": cat.duplicates,
        },
        "id_map": str(id_map) if isinstance(id_map, (str, Path)) else ("dict" if mapping else None),
        "items_missing_from_catalog": missing_from_catalog,
        "images": {
            "source": source.description,
            "missing_image_rule": missing_rule,
            "similarity_for_missing": 0.0,
            "n_real": int(mask.sum()),
            "n_missing": int((~mask).sum()),
            "missing_by_reason": by_reason,
            "missing": missing,
        },
        "text_hashes": {name: [text_hashes[i][v] for i in range(N)] for v, name in enumerate(view_set.names)},
        "image_hashes": image_hashes,
        "chunk_size": chunk_size,
        "work": work,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }
