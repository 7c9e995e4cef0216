"""kill -9 `extract`, `finetune` and `compare` at chosen points; re-running gives exactly the uninterrupted result.

Each killed process is a forked child that SIGKILLs itself at a :mod:`cliper.faults` point
(see ``safety_helpers.killed_in_child``); the re-run happens in this process and is compared
with an uninterrupted run bit for bit (arrays, weights, logs, tables).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safety_helpers import assert_same_run, killed_in_child, write_inputs

VOLATILE = ("created", "timings_s", "work")


def _manifest(store):
    m = json.loads((store / "manifest.json").read_text())
    return {k: v for k, v in m.items() if k not in VOLATILE}


@pytest.mark.parametrize("point", ["extract.chunk:1", "extract.chunk:3", "extract.arrays:1"])
def test_extract_killed_then_rerun_gives_the_uninterrupted_store(point, demo, tmp_path):
    from cliper.features.extract import extract_features
    from cliper.features.store import ARRAY_FILES

    cat, clip = demo

    def extract(out):
        return extract_features(cat.meta, out, clip, id_map=cat.item_mapping, images=cat.images, device="cpu",
                                chunk_size=16, progress=False)

    full = extract(tmp_path / "full")
    killed_in_child(point, lambda: extract(tmp_path / "store"))
    assert not (tmp_path / "store" / "manifest.json").exists()
    resumed = extract(tmp_path / "store")
    assert resumed.work["chunks_reused"] >= 1  # finished chunks were not recomputed
    for name in ARRAY_FILES:
        a, b = (np.load(d / f"{name}.npy") for d in (tmp_path / "full", tmp_path / "store"))
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert _manifest(tmp_path / "store") == _manifest(tmp_path / "full")
    assert full.work["chunks"] == resumed.work["chunks"] == 4


FT = dict(batch_size=8, held_out_fraction=0.25, hidden_size=32, layers=1, heads=2, projection_dim=16,
          bpe_merges=300)


@pytest.fixture(scope="module")
def ft_reference(tmp_path_factory):
    from cliper.demo import generate_demo_catalog
    from cliper.finetune import FinetuneConfig, finetune_clip

    root = tmp_path_factory.mktemp("ftkill")
    cat = generate_demo_catalog(root / "cat", n_items=60, n_users=10, seed=5, progress=False)
    full = finetune_clip(cat.meta, cat.images, root / "full", config=FinetuneConfig(epochs=3, **FT), progress=False)
    return cat, full


def _rows(path):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@pytest.mark.parametrize("point", ["finetune.checkpoint:2", "finetune.logged:1", "finetune.best:1"])
def test_finetune_killed_then_resumed_gives_the_uninterrupted_model(point, ft_reference, tmp_path, monkeypatch):
    from cliper.finetune import FinetuneConfig, finetune_clip

    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    cat, full = ft_reference
    run = tmp_path / "run"
    cfg = FinetuneConfig(epochs=3, **FT)
    killed_in_child(point, lambda: finetune_clip(cat.meta, cat.images, run, config=cfg, progress=False))
    resumed = finetune_clip(cat.meta, cat.images, run, config=cfg, progress=False)
    assert _rows(resumed.log_path) == _rows(full.log_path)
    assert resumed.best_epoch == full.best_epoch and resumed.best_metrics == full.best_metrics
    for a, b in ((full.last_dir, resumed.last_dir), (full.best_dir, resumed.best_dir)):
        wa, wb = _weights(a), _weights(b)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def compare_reference(tmp_path_factory):
    from cliper.experiments.compare import run_compare
    from cliper.experiments.spec import DatasetEntry, ExperimentSpec

    root = tmp_path_factory.mktemp("cmpkill")
    inputs = write_inputs(root / "in")
    spec = ExperimentSpec(
        name="t", datasets={"t": DatasetEntry(path=str(inputs["inter"]))}, backbones=["vbpr", "lattice"],
        seeds=[0],
        featuresets={"vanilla": {"features.image": str(inputs["image"])},
                     "cliper": {"features.image": str(inputs["image"]), "features.text": str(inputs["text"])}},
        overrides={"train.epochs": 3, "train.patience": 100, "model.embedding_dim": 16, "train.batch_size": 64})
    run_compare(spec, root / "full", progress=False)
    return spec, root / "full"


@pytest.mark.parametrize("point", ["compare.unit:1", "train.checkpoint:5", "train.best:4"])
def test_compare_killed_then_rerun_gives_the_uninterrupted_tables(point, compare_reference, tmp_path):
    from cliper.experiments.compare import compare_units, run_compare

    spec, full = compare_reference
    out = tmp_path / "exp"
    killed_in_child(point, lambda: run_compare(spec, out, progress=False))
    assert not (out / "compare.csv").exists()
    run_compare(spec, out, progress=False)
    for unit in compare_units(spec):
        assert_same_run(unit.folder(full), unit.folder(out))
    for name in ("compare.csv", "results.csv"):
        assert (out / name).read_text().replace(str(out), "<out>") == (full / name).read_text().replace(str(full), "<out>")
