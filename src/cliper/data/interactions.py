"""The split user-item graph every model and evaluator reads.

MMRec's ``.inter`` format: tab-separated with a header; columns ``userID itemID x_label``
(extra columns ignored); label 0/1/2 = train/valid/test; ids 0-based and contiguous.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cliper.errors import DataError, reading

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
REQUIRED_COLUMNS = ("userID", "itemID", "x_label")


@dataclass(frozen=True)
class Split:
    """One split's (user, item) pairs as parallel int64 arrays."""

    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True)
class TrainView:
    """What a model may see: sizes and the TRAIN interactions only (never valid/test)."""

    n_users: int
    n_items: int
    users: np.ndarray
    items: np.ndarray
    matrix: sp.csr_matrix  # n_users x n_items, 1.0 per train pair

    @property
    def n_interactions(self) -> int:
        return int(self.users.shape[0])


@dataclass
class InteractionData:
    """A dataset with its three splits, sizes and cached sparse matrices."""

    n_users: int
    n_items: int
    train: Split
    valid: Split
    test: Split
    name: str = "dataset"
    source: Path | None = None
    dropped_eval_rows: int = 0
    _matrices: dict[str, sp.csr_matrix] = field(default_factory=dict, repr=False)

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def matrix(self, name: str) -> sp.csr_matrix:
        """Binary CSR user x item matrix of one split (canonical: sorted indices, no duplicates)."""
        if name not in self._matrices:
            s = self.split(name)
            m = sp.csr_matrix(
                (np.ones(len(s), dtype=np.float32), (s.users, s.items)),
                shape=(self.n_users, self.n_items),
            )
            m.sum_duplicates()
            m.sort_indices()
            self._matrices[name] = m
        return self._matrices[name]

    @property
    def train_matrix(self) -> sp.csr_matrix:
        return self.matrix("train")

    def train_view(self) -> TrainView:
        return TrainView(self.n_users, self.n_items, self.train.users, self.train.items, self.train_matrix)

    def eval_users(self, name: str) -> np.ndarray:
        """Users with at least one relevant item in ``name`` (the users a metric averages over)."""
        counts = np.diff(self.matrix(name).indptr)
        return np.flatnonzero(counts > 0)

    def stats(self) -> dict[str, float | int | str]:
        """Sizes, split counts, density and degree summaries."""
        n_inter = len(self.train) + len(self.valid) + len(self.test)
        tm = self.train_matrix
        u_deg = np.diff(tm.indptr)
        i_deg = np.bincount(self.train.items, minlength=self.n_items)
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n_inter,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "density": n_inter / float(self.n_users * self.n_items),
            "train_user_degree_mean": float(u_deg.mean()),
            "train_user_degree_min": int(u_deg.min()),
            "train_item_degree_mean": float(i_deg.mean()),
            "train_item_degree_min": int(i_deg.min()),
            "items_without_train": int((i_deg == 0).sum()),
            "valid_users": int(self.eval_users("valid").size),
            "test_users": int(self.eval_users("test").size),
            "dropped_eval_rows": self.dropped_eval_rows,
        }


def _integer_column(
    df: pd.DataFrame, col: str, path: Path, lines: np.ndarray, upper: int | None = None, why: str = ""
) -> np.ndarray:
    """Parse a column of non-negative integers <= ``upper``; fail naming the first bad line (``lines[row]``).

    The range check runs before anything is sized by the largest id, so a hostile id
    (2e9, 1e12, beyond int64) is an error in milliseconds, not a huge allocation.
    """
    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce")
    filled = values.fillna(0)
    bad = values.isna() | (values < 0) | ~np.isfinite(filled) | (values != np.floor(filled))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"column {col!r} must hold non-negative integers, got {raw.iloc[row]!r}", path, int(lines[row])
        )
    if upper is None:
        upper, why = 2**53, "larger than any count this reader supports"
    over = (values > upper).to_numpy()
    if over.any():
        row = int(np.flatnonzero(over)[0])
        raise DataError(f"{col} {raw.iloc[row].strip()} is out of range: {why}", path, int(lines[row]))
    return values.to_numpy(dtype=np.int64)


def _check_contiguous(ids: np.ndarray, what: str, path: Path, lines: np.ndarray) -> int:
    """N when ``ids`` are exactly 0..N-1; no array larger than the row count is allocated."""
    top = int(ids.max())
    size = min(top, ids.size - 1) + 1  # contiguous ids that all appear cannot exceed the row count
    present = np.zeros(size, dtype=bool)
    present[ids[ids < size]] = True
    if top >= size or not present.all():
        first = int(np.flatnonzero(~present)[0]) if not present.all() else size
        never = top + 1 - int(np.unique(ids).size)
        largest = f" (largest: {top} on line {int(lines[int(np.argmax(ids))])})" if top >= size else ""
        raise DataError(
            f"{what} ids are not contiguous: expected 0..{top}, "
            f"{never} id(s) never appear (first: {first}){largest}; remap ids with `cliper data build`",
            path,
        )
    return size


def load_inter(
    path: str | Path,
    name: str | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
) -> InteractionData:
    """Read and validate an MMRec ``.inter`` file.

    Errors name the file and line: non-integer ids, labels outside 0/1/2, duplicate
    (user, item) pairs, non-contiguous ids. Valid/test rows of users with no train
    item are dropped and counted with a warning (the standard protocol). ``n_items``
    may be given when the catalogue has items no interaction touches.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder, not an interaction file", path)
    if not path.is_file():
        raise DataError("interaction file not found", path)
    try:
        # blank lines are read (then dropped below) so that row -> line number stays exact
        with reading(path):
            df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, engine="c", skip_blank_lines=False)
    except pd.errors.ParserError as exc:
        raise DataError(f"not a tab-separated table: {' '.join(str(exc).split())}", path) from None
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", path) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"header must contain {', '.join(REQUIRED_COLUMNS)} (tab-separated); missing {', '.join(missing)}; "
            f"found {', '.join(df.columns)}",
            path,
            1,
        )
    lines = np.arange(2, len(df) + 2)
    blank = (df.isna() | (df == "")).all(axis=1).to_numpy()
    if blank.any():
        df, lines = df[~blank].reset_index(drop=True), lines[~blank]
    if len(df) == 0:
        raise DataError("no interactions after the header", path)
    users = _integer_column(df, "userID", path, lines)
    items = _integer_column(df, "itemID", path, lines)
    labels = _integer_column(df, "x_label", path, lines)
    bad = labels > 2
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"x_label must be 0, 1 or 2 (train/valid/test), got {labels[row]}", path, int(lines[row]))

    # ids first: everything below is sized by the largest id, so it must be bounded by now
    nu = _check_contiguous(users, "user", path, lines)
    ni = _check_contiguous(items, "item", path, lines) if n_items is None else int(n_items)
    if n_users is not None:
        nu = max(nu, int(n_users))
    if items.max() >= ni:
        row = int(np.argmax(items))
        raise DataError(f"item id {int(items[row])} is out of range for n_items={ni}", path, int(lines[row]))

    # duplicate (user, item) pairs, in any split
    key = users * (int(items.max()) + 1) + items
    order = np.argsort(key, kind="stable")
    dup = np.flatnonzero(key[order][1:] == key[order][:-1])
    if dup.size:
        first, second = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
        raise DataError(
            f"duplicate pair user {users[second]} item {items[second]} (also on line {lines[first]})",
            path,
            int(lines[second]),
        )


    train_mask = labels == 0
    has_train = np.zeros(nu, dtype=bool)
    has_train[users[train_mask]] = True
    orphan = (~train_mask) & ~has_train[users]
    dropped = int(orphan.sum())
    if dropped:
        log.warning(
            "%s: dropped %d valid/test row(s) of %d user(s) with no train items",
            path,
            dropped,
            np.unique(users[orphan]).size,
        )
    if not train_mask.any():
        raise DataError("no train interactions (x_label 0): there is nothing to train on", path)
    keep = ~orphan
    splits = {
        s: Split(users[keep & (labels == i)].copy(), items[keep & (labels == i)].copy())
        for i, s in enumerate(SPLITS)
    }
    return InteractionData(
        n_users=nu,
        n_items=ni,
        name=name or path.stem,
        source=path,
        dropped_eval_rows=dropped,
        **splits,
    )
