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

One pipeline, several executors: :func:`read_inputs` (catalogue, id map, item rows) ->
:func:`plan_chunks` -> per chunk :func:`prepare_chunk` (:func:`build_chunk_views`,
:func:`load_chunk_images`) -> :class:`ChunkEncoder` (chunk key; reuse, or
:func:`encode_chunk` + :func:`write_chunk`) -> :func:`assemble_store` and the manifest.
``engine="local"`` runs the stages in this process; ``engine="ray"`` runs prepare as Ray
tasks and the encoder in a Ray Data actor pool (:mod:`cliper.engines.ray`). Both write
the same chunk files, so either engine resumes a store the other started.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cliper import __version__, faults
from cliper.atomic import atomic_write_text
from cliper.catalog import CatalogResult, load_id_map, read_catalog
from cliper.encoders.base import Encoder, kept_tokens, l2_normalise
from cliper.errors import ConfigError, DataError
from cliper.features import finished
from cliper.features.store import (
    MANIFEST,
    FeatureStore,
    atomic_save_npy,
    atomic_save_npz,
)
from cliper.images import ImageBytes, ImageFailure, NoImageSource, decode_image, make_image_source
from cliper.outputs import holding_output
from cliper.views import ViewSet, build_views, load_view_set

log = logging.getLogger(__name__)

MISSING_IMAGE_RULES = ("global_text", "zeros")
STORE_FORMAT = "cliper-feature-store/1"
_TEXT_CACHE_LIMIT = 50_000
FAULT_ENV = "CLIPER_FAULT_EXIT_AFTER_CHUNK"  # test hook "<chunk index>:<marker file>" (module docstring)


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
            f"{m['timings_s']['total']:.1f} s; " + coverage_line(m.get("text_coverage"))
        )


# -- stage 1: the catalogue and the item universe -------------------------------------------------
@dataclass
class ExtractInputs:
    """What the driver reads once: the catalogue, the id map, and rows ``0..n_items-1``."""

    cat: CatalogResult
    mapping: Mapping[str, int] | None
    n_items: int
    key_of: dict[int, str]
    missing_from_catalog: list[int]
    id_map_label: str | None = None  # the manifest's "id_map": the file, "dict", or None


def read_inputs(catalog: str | Path | CatalogResult, id_map: str | Path | Mapping[str, int] | None,
                catalog_format: str = "auto", key_field: str | None = None,
                field_map: Mapping[str, str] | None = None, image_field: str | None = None) -> ExtractInputs:
    """Read the catalogue (whole: its skip/duplicate counts go to the manifest) and fix the item rows."""
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
    label = str(id_map) if isinstance(id_map, (str, Path)) else ("dict" if mapping else None)
    return ExtractInputs(cat, mapping, n_items, key_of, missing_from_catalog, label)


# -- stage 2: plan chunks ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChunkPlan:
    """One resumable unit of work: its items with everything a worker needs (no catalogue access)."""

    index: int
    ids: tuple[int, ...]
    keys: tuple[str, ...]
    fields: tuple[dict[str, Any] | None, ...]  # None: the item is not in the catalogue
    urls: tuple[tuple[str, ...], ...]


def plan_chunks(inputs: ExtractInputs, chunk_size: int) -> list[ChunkPlan]:
    """Items ``0..N-1`` cut into chunks of ``chunk_size`` (the last one shorter)."""
    items, N = inputs.cat.items, inputs.n_items
    plans = []
    for c, start in enumerate(range(0, N, chunk_size)):
        ids = tuple(range(start, min(start + chunk_size, N)))
        plans.append(ChunkPlan(
            c, ids, tuple(inputs.key_of.get(i, "") for i in ids),
            tuple(items[i].fields if i in items else None for i in ids),
            tuple(tuple(items[i].image_urls) if i in items else () for i in ids)))
    return plans


# -- stage 3: view texts and images of one chunk ---------------------------------------------------------
def build_chunk_views(plan: ChunkPlan, view_set: ViewSet) -> tuple[list[list[str]], list[list[str]]]:
    """(view texts, their content hashes) per item of the chunk."""
    texts = [build_views(f, view_set) for f in plan.fields]
    return texts, [[content_hash(s) for s in row] for row in texts]


def load_chunk_images(plan: ChunkPlan, source) -> tuple[list[ImageBytes | ImageFailure], list[str]]:
    """(fetched bytes or failure, image key) per item; the key is the bytes' hash or ``missing:<reason>``."""
    reqs = [(i, k, list(u)) for i, k, u in zip(plan.ids, plan.keys, plan.urls)]
    source.prefetch(reqs)
    fetched = [source.fetch(*r) for r in reqs]
    return fetched, [f.sha if isinstance(f, ImageBytes) else f"missing:{f.reason}" for f in fetched]


@dataclass
class PreparedChunk:
    """A chunk ready to encode: texts, hashes and image bytes (the CPU/I-O half of the work)."""

    plan: ChunkPlan
    texts: list[list[str]]
    text_hashes: list[list[str]]
    fetched: list[ImageBytes | ImageFailure]
    img_keys: list[str]
    views_s: float = 0.0
    images_s: float = 0.0


def prepare_chunk(plan: ChunkPlan, view_set: ViewSet, source) -> PreparedChunk:
    """Stage 3 for one chunk: :func:`build_chunk_views` then :func:`load_chunk_images`."""
    t = time.perf_counter()
    texts, hashes = build_chunk_views(plan, view_set)
    t1 = time.perf_counter()
    fetched, img_keys = load_chunk_images(plan, source)
    return PreparedChunk(plan, texts, hashes, fetched, img_keys, t1 - t, time.perf_counter() - t1)


# -- stage 4: encode and write one chunk (the model half) -----------------------------------------------------
@dataclass(frozen=True)
class EncoderSpec:
    """How a worker loads the encoder (hub id or folder + options), so that each worker loads its own."""

    name: str
    device: str = "auto"
    long_text: str = "truncate"
    batch_size: int = 64
    dtype: str | None = None

    def load(self) -> Encoder:
        from cliper.encoders import load_encoder

        return load_encoder(self.name, device=self.device, long_text=self.long_text, batch_size=self.batch_size,
                            dtype=self.dtype)


@dataclass(frozen=True)
class ChunkSettings:
    """What every chunk of one extraction shares (part of each chunk's key)."""

    chunks_dir: str
    view_names: tuple[str, ...]
    missing_image: str
    batch_size: int
    image_threads: int = 1  # threads decoding/preprocessing images in each worker (not part of the key)
    # a finished store in the output folder (cliper.features.finished): its chunk keys are
    # compared before each chunk is encoded; None when there is none or it is not kept
    finished: dict[str, Any] | None = None
    force: bool = False

    @property
    def global_idx(self) -> int | None:
        return self.view_names.index("global") if "global" in self.view_names else None


@dataclass
class ChunkOutcome:
    """What the driver needs back from a chunk (its embeddings stay in the chunk file)."""

    index: int
    ids: tuple[int, ...]
    key: str
    path: str
    computed: bool
    text_hashes: list[list[str]]
    img_keys: list[str]
    encoder: dict[str, Any]
    work: dict[str, float]
    timings: dict[str, float]


def encoder_info(enc: Encoder) -> dict[str, Any]:
    """The manifest's ``encoder`` section."""
    return {
        "id": enc.id,
        "kind": "clip" if enc.supports_images else "text",
        "fingerprint": enc.fingerprint(),
        "dim": enc.dim,
        "max_text_length": enc.max_text_length,
        "long_text": getattr(enc, "long_text", "truncate"),
        "device": str(getattr(enc, "device", "")),
        "dtype": str(getattr(enc, "dtype", "")),
    }


def chunk_key(fingerprint: str, settings: ChunkSettings, prepared: PreparedChunk) -> str:
    """Hash of everything a chunk's embeddings depend on: encoder, rule, views, ids, texts, image bytes."""
    ids = prepared.plan.ids
    return content_hash(json.dumps([STORE_FORMAT, fingerprint, settings.missing_image, list(settings.view_names),
                                    ids[0], ids[-1], prepared.text_hashes, prepared.img_keys]), 20)


def chunk_path(settings: ChunkSettings, index: int, key: str) -> Path:
    return Path(settings.chunks_dir) / f"chunk_{index:06d}_{key}.npz"


def write_chunk(path: Path, chunk: dict[str, np.ndarray]) -> None:
    """Atomic (temp file + rename): a chunk file is complete or absent, whatever kills the writer."""
    atomic_save_npz(path, **chunk)


class ChunkEncoder:
    """The per-worker stage: loads the encoder once, then reuses or encodes+writes each chunk.

    Keeps a text-embedding cache across the chunks it sees (repeated strings such as the
    missing-value text are encoded once per worker).
    """

    def __init__(self, encoder: EncoderSpec | Encoder, settings: ChunkSettings) -> None:
        t = time.perf_counter()
        self.enc = encoder.load() if isinstance(encoder, EncoderSpec) else encoder
        self.load_s = time.perf_counter() - t
        self.settings = settings
        self.info = encoder_info(self.enc)
        self.text_cache: dict[str, np.ndarray] = {}
        self.coverage_cache: dict[str, tuple[int, int]] = {}

    def __call__(self, prepared: PreparedChunk) -> ChunkOutcome:
        s, plan = self.settings, prepared.plan
        key = chunk_key(self.info["fingerprint"], s, prepared)
        out = Path(s.chunks_dir).parent
        if s.finished is not None and finished.check_chunk(out, s.finished, plan.index, key,
                                                           s.finished.get("chunk_size"), s.force) is None:
            self.settings = s = replace(s, finished=None)  # replaced (--force): no more checks
        path = chunk_path(s, plan.index, key)
        V, d = len(s.view_names), self.enc.dim
        work = dict(texts_encoded=0, images_encoded=0)
        stats0 = self.enc.stats.as_dict()
        t = time.perf_counter()
        computed = _load_chunk(path, V, len(plan.ids), d) is None
        if computed:
            chunk = encode_chunk(self.enc, prepared.texts, prepared.fetched, self.text_cache, s.global_idx,
                                 s.missing_image, s.batch_size, work, s.image_threads, self.coverage_cache)
            write_chunk(path, chunk)
        encode_s = time.perf_counter() - t
        stats = {k: v - stats0.get(k, 0) for k, v in self.enc.stats.as_dict().items()}
        work.update({k: stats[k] for k in ("text_forwards", "image_forwards", "truncated_texts", "windowed_texts",
                                           "forward_s")})
        timings = {"load_encoder": self.load_s, "views": prepared.views_s, "images_fetch": prepared.images_s,
                   "encode": encode_s}
        self.load_s = 0.0  # counted once per worker
        if computed:
            _fault_hook(plan.index)
        return ChunkOutcome(plan.index, plan.ids, key, str(path), computed, prepared.text_hashes, prepared.img_keys,
                            self.info, work, timings)


def _fault_hook(index: int) -> None:
    """Test hook: with ``CLIPER_FAULT_EXIT_AFTER_CHUNK=<index>:<marker>`` the worker process dies
    (``os._exit``) right after writing chunk ``index``, once (the marker file records it), to
    show that a retried worker reuses what was written."""
    import os

    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    at, _, marker = spec.partition(":")
    if int(at) == index and marker and not Path(marker).exists():
        Path(marker).write_text(f"worker {os.getpid()} exited after chunk {index}\n")
        os._exit(17)


# -- stage 5: assemble the arrays and write the manifest --------------------------------------------------------
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
    engine: Any = "local",
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
        engine: ``"local"``, ``"ray"`` or a :class:`cliper.engines.Engine` (then the caller closes it).
        force: replace a finished store made with other inputs (else that is refused,
            :mod:`cliper.features.finished`). The output folder is held exclusively.
    """
    from cliper.engines import get_engine

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if missing_image not in MISSING_IMAGE_RULES:
        raise ConfigError(f"missing-image rule {missing_image!r} must be one of {', '.join(MISSING_IMAGE_RULES)}")
    if chunk_size < 1 or batch_size < 1:
        raise ConfigError("chunk size and batch size must be positive")
    own_engine = isinstance(engine, str) or engine is None
    eng = get_engine(engine)  # before any work: an unusable engine (Ray not installed) fails first
    try:
        out = Path(output)
        chunks_dir = out / "chunks"
        chunks_dir.mkdir(parents=True, exist_ok=True)
        for stale in list(out.glob(".*.tmp")) + list(chunks_dir.glob(".*.tmp")):
            stale.unlink(missing_ok=True)  # leftovers of a killed write; never read
        view_set = views if isinstance(views, ViewSet) else load_view_set(views)

        t = time.perf_counter()
        inputs = read_inputs(catalog, id_map, catalog_format, key_field, field_map, image_field)
        timings["read_catalog"] = time.perf_counter() - t

        if isinstance(encoder, (str, Path)):
            enc_spec: EncoderSpec | Encoder = EncoderSpec(str(encoder), device, long_text, batch_size, dtype)
            from cliper.encoders.sentence import is_sentence_model

            text_only = is_sentence_model(encoder)
        else:
            enc_spec, text_only = encoder, not encoder.supports_images
        if images is None or isinstance(images, (str, Path)):
            source = make_image_source(images, image_cache or out / "image_cache", download_timeout, download_retries)
        else:
            source = images
        if text_only and not isinstance(source, NoImageSource):
            log.warning("%s is text-only: images are ignored", getattr(enc_spec, "name", None) or enc_spec.id)
            source = NoImageSource()

        plans = plan_chunks(inputs, chunk_size)
        kept = _check_finished(out, force, enc_spec, view_set, missing_image, plans)
        settings = ChunkSettings(str(chunks_dir), tuple(view_set.names), missing_image, batch_size,
                                 image_threads=eng.resources.threads,
                                 # per-chunk checks need the same chunking; else check_images decides
                                 finished=None if kept is None or kept.get("chunk_size") != chunk_size else
                                 {"chunk_keys": kept.get("chunk_keys"), "chunk_size": chunk_size},
                                 force=force)
        prepare = _PrepareStage(view_set, source)
        worker = _EncoderFactory(enc_spec, settings)
        bar = _progress(inputs.n_items, progress)
        outcomes: list[ChunkOutcome] = []
        for oc in eng.map_stages(plans, prepare, worker):
            outcomes.append(oc)
            bar.update(len(oc.ids))
            if on_chunk is not None:
                on_chunk(oc.index, len(plans), oc.computed)
            faults.kill_point("extract.chunk")
        bar.close()
        if kept is not None and not (out / MANIFEST).is_file():
            kept = None  # a worker replaced it (--force) when a chunk differed
        result = assemble_store(out, inputs, view_set, source, missing_image, chunk_size, outcomes, timings, t_start,
                                kept=kept, force=force)
        result.manifest["work"]["engine"] = eng.name
        result.manifest["chunk_keys"] = [o.key for o in sorted(outcomes, key=lambda o: o.index)]
        atomic_write_text(out / MANIFEST, json.dumps(result.manifest, indent=1, ensure_ascii=False))
        return ExtractResult(FeatureStore.open(out), result.manifest, result.work)
    finally:
        if own_engine:
            eng.close()


def _check_finished(out: Path, force: bool, enc_spec: "EncoderSpec | Encoder", view_set: ViewSet,
                    missing_image: str, plans: list[ChunkPlan]) -> dict[str, Any] | None:
    """Before anything is encoded: a finished store in ``out`` made with other settings or texts is
    refused (or, with ``force``, unfinished). Returns its manifest while it is kept.

    Only then is the encoder loaded here (its fingerprint is compared); the view texts are
    built for every item, which is cheap next to encoding them.
    """
    if not (out / MANIFEST).is_file():
        return None
    enc = enc_spec.load() if isinstance(enc_spec, EncoderSpec) else enc_spec
    hashes = [row for plan in plans for row in build_chunk_views(plan, view_set)[1]]
    return finished.check_before_encoding(
        out, force, fingerprint=enc.fingerprint(), view_names=view_set.names,
        templates={v.name: v.template for v in view_set.views}, missing_image=missing_image,
        n_items=sum(len(p.ids) for p in plans), text_hashes=hashes)


class _PrepareStage:
    """Picklable ``prepare`` for the engines: one chunk plan -> :class:`PreparedChunk`."""

    def __init__(self, view_set: ViewSet, source) -> None:
        self.view_set, self.source = view_set, source

    def __call__(self, plan: ChunkPlan) -> PreparedChunk:
        return prepare_chunk(plan, self.view_set, self.source)


class _EncoderFactory:
    """Picklable ``worker`` factory for the engines: builds one :class:`ChunkEncoder` per worker."""

    def __init__(self, encoder: EncoderSpec | Encoder, settings: ChunkSettings) -> None:
        self.encoder, self.settings = encoder, settings

    def __call__(self) -> ChunkEncoder:
        return ChunkEncoder(self.encoder, self.settings)


def assemble_store(out: Path, inputs: ExtractInputs, view_set: ViewSet, source, missing_image: str, chunk_size: int,
                   outcomes: list[ChunkOutcome], timings: dict[str, float], t_start: float,
                   kept: dict[str, Any] | None = None, force: bool = False) -> ExtractResult:
    """Stage 5: the store's arrays from the chunk files, outdated chunk files removed, the manifest built.

    ``manifest.json`` is removed first and written by the caller last, so a half-written
    store never looks finished.
    """
    outcomes = sorted(outcomes, key=lambda o: o.index)
    n_chunks = len(range(0, inputs.n_items, chunk_size))
    if [o.index for o in outcomes] != list(range(n_chunks)):
        raise DataError(f"extraction returned chunks {[o.index for o in outcomes][:10]}..., expected 0..{n_chunks - 1}")
    chunks_dir = out / "chunks"
    info = outcomes[0].encoder
    V, d, N = len(view_set.names), info["dim"], inputs.n_items
    t = time.perf_counter()
    views_arr = np.zeros((V, N, d), np.float32)
    image_arr = np.zeros((N, d), np.float32)
    mask = np.zeros(N, bool)
    reasons = np.full(N, "", dtype=object)
    tokens = np.full((V, N, 2), -1, np.int32)
    image_hashes: list[str | None] = [None] * N
    text_hashes: list[list[str]] = [[] for _ in range(N)]
    work: dict[str, Any] = dict(chunks=0, chunks_computed=0, chunks_reused=0, texts_encoded=0, images_encoded=0,
                                text_forwards=0, image_forwards=0, truncated_texts=0, windowed_texts=0, forward_s=0.0)
    for k in ("views", "load_encoder", "images_fetch", "encode"):
        timings.setdefault(k, 0.0)
    for oc in outcomes:
        path = Path(oc.path)
        chunk = _load_chunk(path, V, len(oc.ids), d)
        if chunk is None:
            raise DataError("a chunk reported finished is missing or unreadable (is the output on storage every "
                            "worker shares?)", path)
        for other in chunks_dir.glob(f"chunk_{oc.index:06d}_*.npz"):
            if other != path:
                other.unlink(missing_ok=True)  # an outdated version of this chunk
        sl = slice(oc.ids[0], oc.ids[-1] + 1)
        views_arr[:, sl] = chunk["views"]
        image_arr[sl] = chunk["image"]
        mask[sl] = chunk["mask"]
        reasons[sl] = chunk["reasons"]
        tokens[:, sl] = chunk["tokens"]
        for j, i in enumerate(oc.ids):
            text_hashes[i] = oc.text_hashes[j]
            if chunk["mask"][j]:
                image_hashes[i] = oc.img_keys[j]
        work["chunks"] += 1
        work["chunks_computed" if oc.computed else "chunks_reused"] += 1
        for k, v in oc.work.items():
            work[k] += v
        for k, v in oc.timings.items():
            timings[k] += v
    work["forward_s"] = round(work["forward_s"], 4)
    for stale in chunks_dir.glob("chunk_*.npz"):
        if int(stale.name.split("_")[1]) >= n_chunks:
            stale.unlink(missing_ok=True)

    finished.check_images(out, kept, image_hashes, force)  # before anything is written
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
    manifest = _manifest(info, view_set, inputs.cat, inputs.id_map_label, N, d, inputs.missing_from_catalog, source,
                         missing_image, mask, reasons, inputs.key_of, text_hashes, image_hashes, work, timings,
                         chunk_size)
    manifest["text_coverage"] = text_coverage(tokens, view_set.names, info)
    return ExtractResult(None, manifest, work)  # type: ignore[arg-type]  # the caller opens the store


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
            # chunks written before coverage was recorded: unknown (-1), not a reason to re-encode
            chunk["tokens"] = z["tokens"] if "tokens" in z.files else np.full((V, k, 2), -1, np.int32)
    except Exception as exc:  # a damaged file from outside this program: recompute it
        log.warning("%s: unreadable chunk (%s); recomputing", path, exc)
        return None
    if chunk["views"].shape != (V, k, d) or chunk["image"].shape != (k, d) or chunk["mask"].shape != (k,):
        return None
    if chunk["tokens"].shape != (V, k, 2):
        return None
    return chunk


def encode_chunk(enc: Encoder, texts: list[list[str]], fetched: list, text_cache: dict[str, np.ndarray],
                 global_idx: int | None, missing_rule: str, batch_size: int, work: dict[str, int],
                 image_threads: int = 1, coverage_cache: dict[str, tuple[int, int]] | None = None
                 ) -> dict[str, np.ndarray]:
    """A chunk's view and image embeddings (texts through ``text_cache``), with the missing-image fill.

    ``tokens`` ``[V, k, 2]``: each view text's content tokens and how many the encoder saw
    (-1 when the encoder cannot say), for the manifest's ``text_coverage``.

    ``image_threads`` > 1 decodes and preprocesses images in that many threads (PIL releases
    the GIL): the same pixels, so the same embeddings, sooner when a GPU waits on the CPU.
    """
    k, V, d = len(texts), len(texts[0]), enc.dim
    todo = list(dict.fromkeys(s for row in texts for s in row if s not in text_cache))
    if todo:
        if len(text_cache) + len(todo) > _TEXT_CACHE_LIMIT:
            text_cache.clear()
        for s, e in zip(todo, enc.encode_texts(todo, batch_size=batch_size)):
            text_cache[s] = e
        work["texts_encoded"] += len(todo)
    views = np.stack([np.stack([text_cache[row[v]] for row in texts]) for v in range(V)]).astype(np.float32)
    tokens = _text_tokens(enc, texts, {} if coverage_cache is None else coverage_cache)

    image = np.zeros((k, d), np.float32)
    mask = np.zeros(k, bool)
    reasons = [""] * k
    decoded, where = [], []
    have = [(j, f) for j, f in enumerate(fetched) if not isinstance(f, ImageFailure)]
    for j, f in enumerate(fetched):
        if isinstance(f, ImageFailure):
            reasons[j] = f.reason
    for (j, f), im in zip(have, _map_threads(decode_image, [f.data for _, f in have], image_threads)):
        if isinstance(im, ImageFailure):
            reasons[j] = im.reason
            log.warning("item image %s: %s", f.origin, im.detail)
            continue
        decoded.append(im)
        where.append(j)
    if decoded:
        image[where] = _encode_images(enc, decoded, batch_size, image_threads)
        mask[where] = True
        work["images_encoded"] += len(decoded)
    if missing_rule == "global_text":
        fill = views[global_idx] if global_idx is not None else l2_normalise(views.mean(axis=0))
        image[~mask] = fill[~mask]
    return {"views": views, "image": image, "mask": mask, "reasons": np.array(reasons, dtype=str), "tokens": tokens}


def _text_tokens(enc: Encoder, texts: list[list[str]], cache: dict[str, tuple[int, int]]) -> np.ndarray:
    """``[V, k, 2]`` int32 (content tokens, tokens encoded) per view text; -1 when ``enc`` has no ``text_coverage``."""
    k, V = len(texts), len(texts[0])
    cover = getattr(enc, "text_coverage", None)
    if cover is None:
        return np.full((V, k, 2), -1, np.int32)
    todo = list(dict.fromkeys(t for row in texts for t in row if t not in cache))
    if todo:
        if len(cache) + len(todo) > _TEXT_CACHE_LIMIT:
            cache.clear()
        for t, (n, kept) in zip(todo, np.asarray(cover(todo)).tolist()):
            cache[t] = (int(n), int(kept))
    return np.array([[cache[row[v]] for row in texts] for v in range(V)], dtype=np.int32).reshape(V, k, 2)


def text_coverage(tokens: np.ndarray, view_names: list[str], info: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``text_coverage``: per view, the share of items whose text was longer than one
    encoder window (truncated, or windowed in ``window`` mode) and the mean fraction of tokens kept.

    ``tokens`` is ``[V, N, 2]`` (content tokens, encoded); rows of -1 (unknown) are left out.
    """
    window = int(info["max_text_length"]) - 2
    mode = info.get("long_text", "truncate")
    views: dict[str, Any] = {}
    for v, name in enumerate(view_names):
        n, kept = tokens[v, :, 0].astype(np.int64), tokens[v, :, 1].astype(np.int64)
        known = n >= 0
        if not known.any():
            views[name] = None
            continue
        n, kept = n[known], kept[known]
        frac = np.where(n > 0, kept / np.maximum(n, 1), 1.0)
        views[name] = {
            "items": int(known.sum()),
            "over_limit": round(float(np.mean(n > window)), 4),
            "kept_fraction": round(float(frac.mean()), 4),
            "mean_tokens": round(float(n.mean()), 1),
            "p90_tokens": round(float(np.percentile(n, 90)), 1),
            "cut_items": int((kept < n).sum()),
        }
    return {"mode": mode, "window_tokens": window, "max_tokens_encoded": int(kept_tokens(np.array([1 << 30]), window, mode)[0]),
            "views": views}


def coverage_line(cov: dict[str, Any] | None) -> str:
    """One summary line: per view, the share over the limit and the fraction of tokens kept."""
    if not cov or not any(cov["views"].values()):
        return "text coverage: unknown (the encoder gives no token counts, or the chunks predate them)"
    verb = "truncated" if cov["mode"] == "truncate" else "windowed"
    parts = [f"{name} {c['over_limit']:.0%} (kept {c['kept_fraction']:.0%})" if c else f"{name} unknown"
             for name, c in cov["views"].items()]
    return f"text over the {cov['window_tokens']}-token window, {verb} (share of items, mean tokens kept): " + ", ".join(parts)


def _map_threads(fn, items: list, threads: int) -> list:
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(fn, items))


def _encode_images(enc: Encoder, images: list, batch_size: int, threads: int) -> np.ndarray:
    """``enc.encode_images``, with each batch's preprocessing split over ``threads`` threads."""
    if threads <= 1 or not (hasattr(enc, "preprocess_images") and hasattr(enc, "encode_pixels")):
        return enc.encode_images(images, batch_size=batch_size)
    import torch

    parts = []
    for s in range(0, len(images), batch_size):
        batch = images[s : s + batch_size]
        step = -(-len(batch) // threads)
        pieces = _map_threads(enc.preprocess_images, [batch[i : i + step] for i in range(0, len(batch), step)], threads)
        parts.append(enc.encode_pixels(torch.cat(pieces)))
    return np.concatenate(parts, axis=0)


def _manifest(info: dict[str, Any], view_set: ViewSet, cat: CatalogResult, id_map_label, N: int, d: int,
              missing_from_catalog, source, missing_rule: str, mask, reasons, key_of, text_hashes, image_hashes, work,
              timings, chunk_size: int) -> dict[str, Any]:
    missing = [{"item_id": i, "key": key_of.get(i, ""), "reason": str(reasons[i])} for i in np.flatnonzero(~mask).tolist()]
    by_reason: dict[str, int] = {}
    for m in missing:
        by_reason[m["reason"]] = by_reason.get(m["reason"], 0) + 1
    return {
        "format": STORE_FORMAT,
        "cliper_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "encoder": dict(info),
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
        "id_map": id_map_label,
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
