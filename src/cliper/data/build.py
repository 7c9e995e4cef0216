"""Raw interaction log -> MMRec dataset folder (``<name>.inter`` + id mappings + summary).

Pipeline: read and validate (:mod:`cliper.data.raw`) -> optional rating filter ->
drop duplicate (user, item) pairs -> iterative k-core (:mod:`cliper.data.kcore`) ->
contiguous 0-based ids -> split (:mod:`cliper.data.splits`) -> write. Every step is
deterministic, so the same input, options and seed give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cliper import __version__
from cliper.atomic import atomic_write_text
from cliper.data.kcore import kcore_mask
from cliper.data.raw import ColumnMap, read_raw
from cliper.data.splits import SPLIT_METHODS, random_split, temporal_split
from cliper.errors import ConfigError, DataError, writing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    """Where the files went and what the build did (the content of ``build_summary.json``)."""

    inter: Path
    user_mapping: Path
    item_mapping: Path
    summary_path: Path
    summary: dict


def id_order(uniq: np.ndarray) -> np.ndarray:
    """Permutation putting distinct original ids in id order: numeric order when every id is an
    integer (ties such as '7'/'007' by string), else lexicographic (Unicode code point) order."""
    strs = np.asarray(uniq, dtype=str)
    s = pd.Series(strs, dtype=object)
    if strs.size and s.str.fullmatch(r"[+-]?\d{1,18}").all():
        return np.lexsort((strs, s.astype(np.int64).to_numpy()))
    return np.argsort(strs, kind="stable")


def _remap(codes: np.ndarray, uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factorize codes of the kept rows -> (contiguous ids in id order, original ids by new id)."""
    present = np.flatnonzero(np.bincount(codes, minlength=len(uniques)))
    kept = np.asarray(uniques, dtype=object)[present]
    order = id_order(kept)
    new_of_code = np.full(len(uniques), -1, dtype=np.int64)
    new_of_code[present[order]] = np.arange(order.size)
    return new_of_code[codes], kept[order]


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a killed build never leaves a half-written file."""
    atomic_write_text(path, text)


def _tsv(df: pd.DataFrame) -> str:
    return df.to_csv(sep="\t", index=False, lineterminator="\n")


def build_dataset(
    raw_path: str | Path,
    out_dir: str | Path,
    fmt: str | None = None,
    columns: ColumnMap | None = None,
    k_core: int = 5,
    split: str = "random",
    seed: int = 2024,
    name: str | None = None,
    min_rating: float | None = None,
    item_k: int | None = None,
    user_header: str = "user_id",
    item_header: str = "asin",
    sep: str | None = None,
    progress: bool = True,
) -> BuildResult:
    """Build an MMRec-format dataset from a raw interaction log.

    * **Dedup rule**: of repeated (user, item) pairs the *earliest* is kept — smallest timestamp,
      ties (or no timestamp column) broken by position in the file. The rating filter runs first,
      so a pair survives if any of its rows passes it.
    * **k-core**: users need >= ``k_core`` and items >= ``item_k`` (default ``k_core``) interactions,
      applied iteratively; ``k_core <= 1`` disables it.
    * **Ids**: users and items are numbered 0.. in :func:`id_order` of their original ids.
    * **Split**: ``random`` (:func:`~cliper.data.splits.random_split`, seeded) or ``temporal``
      (:func:`~cliper.data.splits.temporal_split`, needs a timestamp column).
    * **Files** in ``out_dir``: ``<name>.inter`` (tab-separated ``userID itemID x_label`` plus
      ``timestamp``/``rating`` when the raw data has them; rows sorted by userID, then timestamp if
      present, then itemID), ``u_id_mapping.tsv`` (``user_id userID``), ``i_id_mapping.tsv``
      (``asin itemID``; headers configurable) and ``build_summary.json``. ``name`` defaults to the
      folder's name.
    """
    if split not in SPLIT_METHODS:
        raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_METHODS)}")
    if k_core < 0 or (item_k is not None and item_k < 0):
        raise ConfigError("k-core thresholds must be >= 0")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output {out_dir} is a file, not a folder; choose a folder for -o/--output")
    name = name or out_dir.resolve().name
    if not name or "/" in name or "\\" in name:
        raise ConfigError(f"invalid dataset name {name!r}")
    raw_path = Path(raw_path)

    raw = read_raw(raw_path, fmt=fmt, columns=columns, min_rating=min_rating, sep=sep, progress=progress)
    if split == "temporal" and not raw.has_timestamp:
        raise DataError(
            "the temporal split needs a timestamp column; none found (name it with --time-col)", raw_path
        )
    df = raw.frame

    # -- dedup: keep the earliest row of each (user, item) pair
    if raw.has_timestamp:
        df = df.sort_values(["timestamp", "line"], kind="mergesort")
    n_before = len(df)
    df = df.drop_duplicates(["user", "item"], keep="first")
    n_dups = n_before - len(df)
    if n_dups:
        log.info("dropped %d duplicate (user, item) row(s), keeping the earliest of each pair", n_dups)

    # -- k-core
    ucode, uniq_users = pd.factorize(df["user"])
    icode, uniq_items = pd.factorize(df["item"])
    kc = kcore_mask(ucode, icode, k_core, item_k)
    df = df[kc.keep]
    if len(df) == 0:
        raise DataError(
            f"no interactions left after {k_core}-core filtering "
            f"({n_before - n_dups} distinct pairs in; lower --k-core)",
            raw_path,
        )
    log.info("%d-core: %d of %d pairs kept after %d round(s)", k_core, kc.n_kept, len(kc.keep), kc.rounds)

    # -- contiguous ids, ordered by original id
    users, user_ids = _remap(ucode[kc.keep], np.asarray(uniq_users))
    items, item_ids = _remap(icode[kc.keep], np.asarray(uniq_items))

    # -- split
    if split == "random":
        labels = random_split(users, items, seed)
    else:
        labels = temporal_split(users, items, df["timestamp"].to_numpy())

    out = pd.DataFrame({"userID": users, "itemID": items, "x_label": labels.astype(np.int64)})
    sort_keys = ["userID", "itemID"]
    if raw.has_timestamp:
        out["timestamp"] = df["timestamp"].to_numpy()
        sort_keys = ["userID", "timestamp", "itemID"]
    if raw.has_rating:
        out["rating"] = df["rating"].to_numpy()
    out = out.sort_values(sort_keys, kind="mergesort").reset_index(drop=True)

    # -- write
    with writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    inter_path = out_dir / f"{name}.inter"
    u_path = out_dir / "u_id_mapping.tsv"
    i_path = out_dir / "i_id_mapping.tsv"
    s_path = out_dir / "build_summary.json"
    inter_text = _tsv(out)
    _write_atomic(inter_path, inter_text)
    _write_atomic(u_path, _tsv(pd.DataFrame({user_header: user_ids, "userID": np.arange(len(user_ids))})))
    _write_atomic(i_path, _tsv(pd.DataFrame({item_header: item_ids, "itemID": np.arange(len(item_ids))})))

    counts = np.bincount(labels, minlength=3)
    summary = {
        "name": name,
        "cliper_version": __version__,
        "source": str(raw_path),
        "format": raw.fmt,
        "columns": {
            "user": raw.columns.user,
            "item": raw.columns.item,
            "timestamp": raw.columns.timestamp,
            "rating": raw.columns.rating,
        },
        "min_rating": min_rating,
        "k_core": {"user": k_core, "item": k_core if item_k is None else item_k, "rounds": kc.rounds},
        "split": split,
        "seed": seed if split == "random" else None,
        "dedup_rule": "keep earliest (timestamp, then file position)",
        "rows": {
            "read": raw.rows_read,
            "below_min_rating": raw.rows_below_rating,
            "duplicates_dropped": n_dups,
            "removed_by_k_core": int(len(kc.keep) - kc.n_kept),
            "kept": int(len(out)),
        },
        "users": int(len(user_ids)),
        "items": int(len(item_ids)),
        "train": int(counts[0]),
        "valid": int(counts[1]),
        "test": int(counts[2]),
        "files": {"inter": inter_path.name, "user_mapping": u_path.name, "item_mapping": i_path.name},
        "inter_sha256": hashlib.sha256(inter_text.encode("utf-8")).hexdigest(),
    }
    _write_atomic(s_path, json.dumps(summary, indent=2) + "\n")
    log.info(
        "wrote %s: %d users, %d items, train/valid/test %d/%d/%d",
        inter_path, summary["users"], summary["items"], summary["train"], summary["valid"], summary["test"],
    )
    return BuildResult(inter_path, u_path, i_path, s_path, summary)
