"""The demo's text looks like the real Amazon sample where it matters for the token limit.

Compared with the real 97-item sample when the shared data is present (skipped otherwise):
description word counts (median and 90th percentile within 20%) and missing rates.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from cliper.demo import generate_demo_catalog
from cliper.demo import vocabulary as V
from cliper.demo.generate import DEFAULT_ITEMS, DEFAULT_USERS
from cliper.paths import shared_dataset


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _words(rows: list[dict], key: str) -> np.ndarray:
    return np.array([len(html.unescape(r[key]).split()) for r in rows if r.get(key)])


def _missing(rows: list[dict], key: str) -> float:
    return float(np.mean([not r.get(key) for r in rows]))


@pytest.fixture(scope="module")
def real_rows():
    baby = shared_dataset("amazon-baby")
    sample = baby / "meta_sample.jsonl" if baby else None
    if sample is None or not sample.is_file():
        pytest.skip("the real Amazon sample (CLIPER_SHARED_DATA/amazon-baby/meta_sample.jsonl) is absent")
    return _rows(sample)


@pytest.fixture(scope="module")
def demo_rows(tmp_path_factory):
    cat = generate_demo_catalog(tmp_path_factory.mktemp("demo"), DEFAULT_ITEMS, DEFAULT_USERS, seed=0, progress=False)
    return _rows(cat.meta)


@pytest.mark.parametrize("q", [50, 90])
def test_description_length_matches_the_real_sample(real_rows, demo_rows, q):
    real = np.percentile(_words(real_rows, "description"), q)
    demo = np.percentile(_words(demo_rows, "description"), q)
    assert abs(demo - real) <= 0.2 * real, (q, demo, real)


def test_title_length_and_missing_rates_match_the_real_sample(real_rows, demo_rows):
    for q in (50, 90):
        real, demo = np.percentile(_words(real_rows, "title"), q), np.percentile(_words(demo_rows, "title"), q)
        assert abs(demo - real) <= 0.2 * real, ("title", q, demo, real)
    for key in ("brand", "description", "price"):
        assert abs(_missing(demo_rows, key) - _missing(real_rows, key)) < 0.08, key


def test_informative_sentences_sit_anywhere_in_long_descriptions(demo_rows):
    """The material sentence is not always first: in long texts it often lies past CLIP's window."""
    starts = []
    for r in demo_rows:
        d = html.unescape(r["description"] or "").replace("<br>", " ")
        if len(d.split()) < 100:
            continue
        at = re.search(r"Made\sfrom\s", d)  # the first space may be a non-breaking one
        assert at is not None
        starts.append(len(d[: at.start()].split()))
    starts = np.array(starts)
    assert len(starts) > 100
    assert np.mean(starts == 0) < 0.3 and np.mean(starts > 55) > 0.3  # ~55 words ~ 75 CLIP tokens


def test_boilerplate_names_no_colour():
    """Colour must come from the title and the image only (tests read colours by substring)."""
    names = list(V.COLOURS) + [w for ws in V.COLOUR_SYNONYMS.values() for w in ws]
    assert not [(s, c) for s in V.BOILERPLATE for c in names if c in s.lower()]
