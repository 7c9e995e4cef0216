"""Provenance of a run: what it was trained on, recorded at the start and checked before reuse.

``record`` writes ``<run>/provenance.json`` with the sha256 of the run's ``.inter`` file,
the content hash of its feature store (the manifest's sha256 plus a hash of the arrays'
bytes) and the sha256 of vanilla feature files. ``verify`` re-hashes the same paths and
raises one :class:`~cliper.errors.CliperError` saying what changed: ``--resume``,
``cliper evaluate`` and the experiment runner (reusing a finished run) call it, so a run
never silently mixes, or is scored on, other data than it was trained on.

Hashes are memoised per process by (path, size, mtime), so checking many runs that
share one dataset and store reads each file once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from cliper.errors import CliperError

log = logging.getLogger(__name__)

FILE = "provenance.json"
STORE_MANIFEST = "manifest.json"
STORE_ARRAYS = ("image", "image_mask", "views", "similarity", "item_ids")
_memo: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (read in 1 MiB blocks)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _memo:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _memo[key] = h.hexdigest()
    return _memo[key]


# manifest fields that change when the same extraction is simply run again (its arrays are then identical)
_VOLATILE = ("created", "timings_s", "work", "cliper_version")


def store_digest(store: str | Path) -> dict[str, str]:
    """``manifest_sha256`` (the manifest file's bytes) and ``content_sha256`` (the manifest without its
    timestamps and timings, plus every array file's bytes): re-running the same extraction keeps
    ``content_sha256``; anything that changes the features changes it."""
    store = Path(store)
    manifest = file_sha256(store / STORE_MANIFEST)
    try:
        doc = json.loads((store / STORE_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        doc = {"unreadable": manifest}
    if isinstance(doc, dict):
        doc = {k: v for k, v in doc.items() if k not in _VOLATILE}
    h = hashlib.sha256(json.dumps(doc, sort_keys=True).encode())
    for name in STORE_ARRAYS:
        f = store / f"{name}.npy"
        h.update(f"{name}:{file_sha256(f) if f.is_file() else 'missing'}".encode())
    return {"manifest_sha256": manifest, "content_sha256": h.hexdigest()}


def snapshot(dataset: str | Path | None = None, store: str | Path | None = None,
             image: str | Path | None = None, text: str | Path | None = None) -> dict[str, Any]:
    """The current hashes of a run's inputs (None entries are left out)."""
    out: dict[str, Any] = {}
    if dataset is not None:
        out["dataset"] = {"path": str(dataset), "sha256": file_sha256(dataset)}
    if store is not None:
        out["store"] = {"path": str(store), **store_digest(store)}
    for name, path in (("image", image), ("text", text)):
        if path is not None:
            out[name] = {"path": str(path), "sha256": file_sha256(path)}
    return out


def record(run_dir: str | Path, inputs: dict[str, Any]) -> None:
    """Write ``provenance.json`` (temp file + rename)."""
    path = Path(run_dir) / FILE
    tmp = path.with_name(FILE + ".tmp")
    tmp.write_text(json.dumps({"inputs": inputs}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def recorded(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))["inputs"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CliperError(f"{path}: unreadable provenance record ({exc})") from None


_WHAT = {"dataset": "the dataset", "store": "the feature store", "image": "the image feature file",
         "text": "the text feature file"}


def differences(before: dict[str, Any]) -> list[str]:
    """What changed since ``before`` (a :func:`snapshot`), one phrase per input."""
    found = []
    for name, entry in before.items():
        path = Path(entry["path"])
        what = f"{_WHAT.get(name, name)} {path}"
        if name == "store":
            if not (path / STORE_MANIFEST).is_file():
                found.append(f"{what} is gone (no {STORE_MANIFEST})")
                continue
            now = store_digest(path)
            if now["content_sha256"] != entry.get("content_sha256"):
                found.append(f"{what} was re-extracted or changed (manifest sha256 "
                             f"{entry.get('manifest_sha256', '?')[:12]} -> {now['manifest_sha256'][:12]})")
        else:
            if not path.is_file():
                found.append(f"{what} is gone")
                continue
            now = file_sha256(path)
            if now != entry.get("sha256"):
                found.append(f"{what} changed (sha256 {entry.get('sha256', '?')[:12]} -> {now[:12]})")
    return found


def verify(run_dir: str | Path, action: str) -> None:
    """Raise when any input recorded for ``run_dir`` changed; ``action`` names what is refused."""
    before = recorded(run_dir)
    if before is None:
        log.warning("%s has no %s (made by an older cliper): its inputs cannot be checked", run_dir, FILE)
        return
    diffs = differences(before)
    if diffs:
        raise CliperError(f"cannot {action} {run_dir}: its inputs changed since the run was trained: "
                          + "; ".join(diffs) + ". Train a new run (another --output) on the current inputs")
