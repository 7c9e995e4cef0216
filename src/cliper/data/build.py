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
from cliper.errors import CliperError, ConfigError, DataError, writing
from cliper.outputs import holding_output
from cliper.provenance import file_sha256

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


SUMMARY_FILE = "build_summary.json"


def _inputs(raw_path: Path, fmt, columns: ColumnMap | None, k_core, item_k, split, seed, name, min_rating,
            user_header, item_header, sep) -> dict:
    """Everything that decides a build's files: the raw file's bytes and every option."""
    from dataclasses import asdict

    return {
        "source": str(raw_path), "source_sha256": file_sha256(raw_path), "format": fmt,
        "columns": asdict(columns or ColumnMap()), "min_rating": min_rating,
        "k_core": k_core, "item_k": item_k, "split": split, "seed": seed if split == "random" else None,
        "name": name, "user_header": user_header, "item_header": item_header, "sep": sep,
    }


def _check_finished(out_dir: Path, inputs: dict, force: bool) -> None:
    """Refuse to replace a finished dataset made with other inputs or options (``force`` replaces it)."""
    summary_path = out_dir / SUMMARY_FILE
    diffs: list[str] = []
    old_files: list[Path] = []
    if summary_path.is_file():
        try:
            old = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        before = old.get("inputs")
        if before is None:  # written by an older cliper: compare what it recorded
            k = old.get("k_core") or {}
            before = {"source": old.get("source"), "min_rating": old.get("min_rating"), "k_core": k.get("user"),
                      "split": old.get("split"), "seed": old.get("seed"), "name": old.get("name")}
        diffs = [f"{key} ({before[key]!r} -> {inputs.get(key)!r})" if key != "source_sha256" else
                 "the raw file's content (sha256)" for key in before if before[key] != inputs.get(key)]
        old_files = [out_dir / f for f in (old.get("files") or {}).values()] + [summary_path]
    else:
        found = sorted(out_dir.glob("*.inter"))
        if found:
            diffs = [f"it holds {', '.join(p.name for p in found)} not written by `cliper data build`"]
            old_files = found
    if not diffs:
        return
    if not force:
        raise CliperError(f"{out_dir} holds a finished dataset made with other inputs: {'; '.join(diffs)}. "
                          "Choose another --output, or pass --force to replace it")
    log.warning("replacing the dataset in %s (--force): %s", out_dir, "; ".join(diffs))
    for f in old_files:
        f.unlink(missing_ok=True)


@holding_output("out_dir")
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
    force: bool = False,
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
    * **Replacing**: ``out_dir`` is held exclusively; a finished dataset there made from another
      raw file or with other options is refused unless ``force`` (the same build again is fine:
      it is deterministic).
    """
    if split not in SPLIT_METHODS:
        raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_METHODS)}")
    if k_core < 0 or (item_k is not None and item_k < 0):
        raise ConfigError("k-core thresholds must be >= 0")
    out_dir = Path(out_dir)
    name = name or out_dir.resolve().name
    if not name or "/" in name or "\\" in name:
        raise ConfigError(f"invalid dataset name {name!r}")
    raw_path = Path(raw_path)
    inputs = None
    if raw_path.is_file():  # (a missing file is reported by read_raw)
        inputs = _inputs(raw_path, fmt, columns, k_core, item_k, split, seed, name, min_rating, user_header,
                         item_header, sep)
        _check_finished(out_dir, inputs, force)

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
    s_path = out_dir / SUMMARY_FILE
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
        "inputs": inputs,
    }
    _write_atomic(s_path, json.dumps(summary, indent=2) + "\n")
    log.info(
        "wrote %s: %d users, %d items, train/valid/test %d/%d/%d",
        inter_path, summary["users"], summary["items"], summary["train"], summary["valid"], summary["test"],
    )
    return BuildResult(inter_path, u_path, i_path, s_path, summary)
