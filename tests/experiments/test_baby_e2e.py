"""End to end on the shared Baby graph with seeded random project-made features (slow; skipped without the data)."""

import csv
import json

import pytest

from cliper.experiments.compare import run_compare
from cliper.experiments.spec import spec_from_options
from cliper.features.store import FeatureStore

from exp_helpers import write_store


@pytest.mark.slow
@pytest.mark.realdata
def test_compare_on_baby_with_random_store(baby_dir, tmp_path):
    store = write_store(tmp_path / "store", 7050, dim=32, seed=0, missing=(5, 9))
    assert FeatureStore.open(store).n_items == 7050
    spec = spec_from_options(None, datasets=[f"baby={baby_dir}"], stores=[str(store)], backbones=["vbpr"],
                             seeds="0", epochs=1, overrides=["model.embedding_dim=32"])
    out = tmp_path / "out"
    files = run_compare(spec, out, progress=False)
    rows = list(csv.DictReader(open(files["csv"])))
    r = next(r for r in rows if r["metric"] == "recall" and r["k"] == "20")
    m = json.loads((out / "runs/baby/vbpr/cliper/seed0/metrics.json").read_text())
    assert float(r["treatment_mean"]) == pytest.approx(m["test"]["recall@20"], abs=1e-12)
    assert int(r["n_users"]) == 19445
    assert m["dataset"] == "baby" and m["features"]["manifest_sha256"]
