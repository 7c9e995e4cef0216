"""``cliper export-serving``: a trained run folder -> a serving bundle.

The one serving module that imports training code: it rebuilds the run's model with
its best weights (through :func:`cliper.training.runner.load_trained`), takes the
final representations from ``export_embeddings()``, and gathers the raw id maps,
train items, catalogue metadata, thumbnails, CLIP item embeddings and the encoder.

Encoder choice: the feature store's encoder folder is COPIED into the bundle (config,
tokenizer files and safetensors weights only; a folder without safetensors weights is
refused, never unpickled), so a bundle serves search on a machine without the
training files, and its hashes sit in the bundle manifest like every other file.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from cliper.errors import CliperError
from cliper.serving.bundle import BundleContent, write_bundle

log = logging.getLogger(__name__)

ENCODER_SUFFIXES = (".json", ".txt", ".safetensors", ".model")
THUMB_SIZE = 128
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def export_run(run_dir: str | Path, output: str | Path, index: str = "exact", catalog: str | Path | None = None,
               images: str | Path | None = None, with_encoder: bool = True, overwrite: bool = False,
               index_options: dict | None = None) -> Path:
    """Write the serving bundle of ``run_dir`` (a grid folder uses its winner) to ``output``."""
    from cliper.training.runner import METRICS_FILE, find_inter, load_trained

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CliperError(f"{run_dir} is not a run folder")
    source_run = run_dir
    if (run_dir / "grid.json").is_file():
        source_run = run_dir / json.loads((run_dir / "grid.json").read_text())["winner"]["run"]
    cfg, data, model = load_trained(run_dir)
    users, items = (t.numpy() for t in model.export_embeddings())
    inter = find_inter(cfg.dataset.path)
    folder = inter.parent
    item_ids, item_mapping = _raw_ids(folder / "i_id_mapping.tsv", data.n_items, "item")
    user_ids, _ = _raw_ids(folder / "u_id_mapping.tsv", data.n_users, "user")
    train = data.train_matrix
    store_dir = Path(cfg.features.store) if cfg.features.store else None
    store_manifest = _store_manifest(store_dir)

    cat_path, cat_fmt = _catalog_source(catalog, folder, store_manifest)
    metadata = _metadata(cat_path, cat_fmt, item_mapping, data.n_items) if cat_path else None
    image_dir = Path(images) if images else (folder / "images" if (folder / "images").is_dir() else None)
    if images and not image_dir.is_dir():
        raise CliperError(f"--images {images} is not a folder")
    thumbs = _thumbnails(image_dir, item_ids) if image_dir is not None else None

    clip_image = clip_text = None
    feats = getattr(model, "features", None)
    if feats is not None:
        import torch

        with torch.no_grad():
            if feats.has("image"):
                clip_image = feats.get("image").detach().float().cpu().numpy()
            if feats.has("text"):
                clip_text = feats.get("text").detach().float().cpu().numpy()
    encoder_dir, encoder_info = (None, None)
    if with_encoder and store_manifest is not None and (clip_image is not None or clip_text is not None):
        encoder_dir, encoder_info = _encoder(store_manifest)

    metrics = {}
    if (source_run / METRICS_FILE).is_file():
        metrics = json.loads((source_run / METRICS_FILE).read_text())
    source: dict[str, Any] = {
        "run": str(source_run.resolve()),
        "model": cfg.model_name,
        "dataset": {"name": data.name, "inter": str(inter.resolve()), "sha256": _sha256(inter)},
        "feature_store": None if store_dir is None else {
            "path": str(store_dir.resolve()),
            "manifest_sha256": _sha256(store_dir / "manifest.json"),
            "fusion": cfg.features.fusion, "views": cfg.features.views},
        "weights": "best",
        "best_epoch": metrics.get("best_epoch"),
        "test": metrics.get("test"),
        "code_version": metrics.get("code_version"),
        "catalog": None if cat_path is None else str(Path(cat_path).resolve()),
        "images": None if image_dir is None else str(image_dir.resolve()),
    }
    content = BundleContent(
        users=users, items=items, user_ids=user_ids, item_ids=item_ids,
        seen_indptr=train.indptr.astype(np.int64), seen_indices=train.indices.astype(np.int64),
        metadata=metadata, thumbnails=thumbs, clip_image=clip_image, clip_text=clip_text,
        encoder_dir=encoder_dir, encoder_info=encoder_info, source=source,
    )
    try:
        return write_bundle(content, output, index=index, index_options=index_options, overwrite=overwrite)
    finally:
        if encoder_dir is not None:
            import shutil

            shutil.rmtree(encoder_dir, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _raw_ids(path: Path, n: int, what: str) -> tuple[list[str], dict[str, int] | None]:
    """Raw id of each internal index from an ``x_id_mapping.tsv``; the index itself when there is no file."""
    if not path.is_file():
        log.warning("no %s: %s ids are served as their internal indices", path.name, what)
        return [str(i) for i in range(n)], None
    from cliper.catalog import load_id_map

    mapping = load_id_map(path)
    ids: list[str | None] = [None] * n
    for key, idx in mapping.items():
        if idx < n:
            if ids[idx] is not None:
                raise CliperError(f"{path}: {what} index {idx} has two raw ids ({ids[idx]!r}, {key!r})")
            ids[idx] = key
    missing = [i for i, v in enumerate(ids) if v is None]
    if missing:
        raise CliperError(f"{path}: {len(missing)} {what} indices have no raw id (first: {missing[0]})")
    return [str(v) for v in ids], mapping


def _store_manifest(store_dir: Path | None) -> dict | None:
    if store_dir is None:
        return None
    path = store_dir / "manifest.json"
    if not path.is_file():
        raise CliperError(f"the run's feature store {store_dir} has no manifest.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _catalog_source(catalog, folder: Path, store_manifest: dict | None) -> tuple[Path | None, str]:
    """--catalog, else the catalogue the feature store was extracted from, else a meta*.json(l) beside the data."""
    if catalog:
        if not Path(catalog).is_file():
            raise CliperError(f"--catalog {catalog} not found")
        return Path(catalog), "auto"
    if store_manifest is not None:
        cat = store_manifest.get("catalog") or {}
        if cat.get("path") and Path(cat["path"]).is_file():
            return Path(cat["path"]), cat.get("format") or "auto"
    found = sorted(p for p in folder.glob("meta*") if p.suffix in (".jsonl", ".json", ".gz"))
    return (found[0], "auto") if found else (None, "auto")


def _metadata(path: Path, fmt: str, mapping: dict[str, int] | None, n_items: int) -> list[dict[str, Any]]:
    """title, brand and categories per item row (empty for items the catalogue lacks)."""
    from cliper.catalog import read_catalog

    result = read_catalog(path, fmt=fmt, id_map=mapping)
    out: list[dict[str, Any]] = [{} for _ in range(n_items)]
    for item_id, rec in result.items.items():
        if 0 <= item_id < n_items:
            f = rec.fields
            out[item_id] = {"title": _text(f.get("title")), "brand": _text(f.get("brand")),
                            "categories": _categories(f.get("categories"))}
    log.info("metadata for %d of %d items from %s", sum(1 for m in out if m.get("title")), n_items, path)
    return out


def _text(v: Any, limit: int = 300) -> str | None:
    if v is None:
        return None
    s = " ".join(html.unescape(str(v)).split())
    return s[:limit] or None


def _categories(v: Any, limit: int = 12) -> list[str]:
    """Amazon's nested category lists flattened to unique names, in order."""
    flat: list[str] = []

    def walk(x):
        if isinstance(x, (list, tuple)):
            for y in x:
                walk(y)
        elif x is not None and str(x).strip():
            flat.append(html.unescape(str(x)).strip())

    walk(v)
    return list(dict.fromkeys(flat))[:limit]


def _thumbnails(image_dir: Path, item_ids: list[str]) -> list[bytes | None] | None:
    """A small JPEG per item from ``<image_dir>/<raw item id>.<ext>``; None where there is no image."""
    from PIL import Image

    out: list[bytes | None] = []
    found = 0
    for key in item_ids:
        data = None
        for ext in IMAGE_SUFFIXES:
            p = image_dir / f"{key}{ext}"
            if p.parent == image_dir and p.is_file():
                try:
                    with Image.open(p) as im:
                        im = im.convert("RGB")
                        im.thumbnail((THUMB_SIZE, THUMB_SIZE))
                        buf = io.BytesIO()
                        im.save(buf, format="JPEG", quality=85)
                        data = buf.getvalue()
                except (OSError, ValueError) as exc:
                    log.warning("thumbnail of %s skipped: %s", p, exc)
                break
        found += data is not None
        out.append(data)
    if not found:
        log.warning("no item images found in %s: the bundle has no thumbnails", image_dir)
        return None
    return out


def _encoder(store_manifest: dict) -> tuple[Path | None, dict | None]:
    """The encoder folder to copy and its manifest entry; (None, None) when it cannot be bundled."""
    enc = store_manifest.get("encoder") or {}
    if enc.get("kind") != "clip":
        log.warning("the feature store's encoder is not a CLIP model: the bundle has no text search")
        return None, None
    name = str(enc.get("id", ""))
    folder = Path(name)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(name, local_files_only=True,
                                            allow_patterns=[f"*{s}" for s in ENCODER_SUFFIXES]))
        except Exception as exc:  # not in the local cache: serve without search rather than fail the export
            log.warning("encoder %r is not a local folder or cached (%s): the bundle has no text search", name, exc)
            return None, None
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix in ENCODER_SUFFIXES]
    if not any(p.suffix == ".safetensors" for p in files):
        raise CliperError(f"encoder {name!r} has no safetensors weights; bundles never hold pickled weights "
                          "(convert it, or pass --no-encoder)")
    fingerprint = str(enc.get("fingerprint", ""))
    if folder.resolve() == Path(name).resolve() and Path(name).is_dir():
        from cliper.encoders.base import folder_fingerprint

        if fingerprint and f"|{folder_fingerprint(folder)}|" not in fingerprint:
            raise CliperError(f"encoder folder {name} changed since the features were extracted (fingerprint "
                              "mismatch): its text tower no longer matches the item embeddings; re-extract, or "
                              "pass --no-encoder")
    import tempfile

    staging = Path(tempfile.mkdtemp(prefix="cliper-encoder-"))
    import shutil

    for p in files:
        shutil.copyfile(p, staging / p.name)
    info = {"id": name, "fingerprint": fingerprint, "dim": enc.get("dim"), "long_text": enc.get("long_text", "truncate"),
            "max_text_length": enc.get("max_text_length"), "copied": True}
    return staging, info
