"""Test helper: a tiny content-based recommender reading only the observable metadata fields."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cliper.demo import vocabulary as V

_COLOUR_WORDS = {w: c for c in V.COLOURS for w in (c,) + V.COLOUR_SYNONYMS[c]}


def item_tokens(record: dict) -> set[str]:
    """Observable content features: leaf categories, colour words in the title, brand."""
    toks: set[str] = set()
    for path in record.get("categories") or []:
        if len(path) > 1:
            toks.add("cat:" + html.unescape(path[1]))
    title = html.unescape(record.get("title") or "").lower()
    for word, colour in _COLOUR_WORDS.items():
        if re.search(r"\b" + re.escape(word) + r"\b", title):
            toks.add("col:" + colour)
    if record.get("brand"):
        toks.add("brand:" + html.unescape(record["brand"]).lower().removesuffix(" inc."))
    return toks


def load(root: Path):
    meta = [json.loads(line) for line in (root / "meta_demo.jsonl").read_text().splitlines()]
    inter = pd.read_csv(root / "demo.inter", sep="\t")
    return meta, inter


def recall_at_k(scores: np.ndarray, inter: pd.DataFrame, k: int = 20) -> float:
    """Full-ranking test Recall@k with each user's train items masked."""
    train = inter[inter.x_label == 0]
    test = inter[inter.x_label == 2]
    scores = scores.copy()
    scores[train.userID.to_numpy(), train.itemID.to_numpy()] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    recalls = []
    for u, group in test.groupby("userID"):
        rel = set(group.itemID)
        recalls.append(len(rel.intersection(top[u])) / len(rel))
    return float(np.mean(recalls))


def content_scores(meta: list[dict], inter: pd.DataFrame) -> np.ndarray:
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for rec in meta:
        for t in item_tokens(rec):
            rows.append(rec["itemID"])
            cols.append(vocab.setdefault(t, len(vocab)))
    x = np.zeros((len(meta), len(vocab)))
    x[rows, cols] = 1.0
    n_users = int(inter.userID.max()) + 1
    train = inter[inter.x_label == 0]
    r = np.zeros((n_users, len(meta)))
    r[train.userID.to_numpy(), train.itemID.to_numpy()] = 1.0
    profile = r @ x
    profile /= np.maximum(profile.sum(axis=1, keepdims=True), 1.0)
    return profile @ x.T


def popularity_scores(meta: list[dict], inter: pd.DataFrame) -> np.ndarray:
    n_users = int(inter.userID.max()) + 1
    train = inter[inter.x_label == 0]
    pop = np.bincount(train.itemID.to_numpy(), minlength=len(meta)).astype(float)
    return np.tile(pop, (n_users, 1))
