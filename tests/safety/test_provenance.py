"""Provenance is checked, not just recorded: `--resume`, `cliper evaluate` and the experiment runner refuse
a run whose `.inter` file, feature store or feature files changed since it was trained."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from safety_helpers import config, killed_in_child, run_cli, write_inputs

from cliper.errors import CliperError
from cliper.training.runner import load_trained, train_run


def _move_rows_to_test(inter, n=5):
    """Relabel the first ``n`` train rows as test rows (what would silently change the numbers)."""
    lines = inter.read_text().splitlines()
    moved = 0
    for k in range(1, len(lines)):
        u, i, label = lines[k].split("\t")
        if label == "0" and moved < n:
            lines[k] = f"{u}\t{i}\t2"
            moved += 1
    inter.write_text("\n".join(lines) + "\n")


@pytest.fixture
def run(tmp_path):
    inputs = write_inputs(tmp_path / "in")
    train_run(config(inputs, "vbpr", epochs=2), tmp_path / "run", progress=False)
    return inputs, tmp_path / "run"


def test_evaluate_refuses_a_changed_inter_file(run):
    inputs, folder = run
    ok = run_cli("evaluate", str(folder))
    assert ok.returncode == 0, ok.stderr
    _move_rows_to_test(inputs["inter"])
    res = run_cli("evaluate", str(folder))
    assert res.returncode == 2
    line, = res.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot evaluate {folder}: its inputs changed since the run was trained: "
                           f"the dataset {inputs['inter']} changed (sha256 ")


def test_evaluate_refuses_a_changed_feature_file(run):
    inputs, folder = run
    load_trained(folder)
    np.save(inputs["text"], np.load(inputs["text"]) * 2)
    with pytest.raises(CliperError, match=f"the text feature file {inputs['text']} changed"):
        load_trained(folder)


def test_resume_after_kill_refuses_a_changed_inter_file(tmp_path):
    inputs = write_inputs(tmp_path / "in")
    folder = tmp_path / "run"
    cfg = config(inputs, "lightgcn", epochs=4, features=False)
    killed_in_child("train.checkpoint:2", lambda: train_run(cfg, folder, progress=False))
    _move_rows_to_test(inputs["inter"])
    with pytest.raises(CliperError, match=f"cannot resume {folder}: its inputs changed .* the dataset"):
        train_run(cfg, folder, resume=True, progress=False)
    assert not (folder / "metrics.json").exists()


def _store_run(demo, tmp_path):
    from cliper.features.extract import extract_features

    cat, clip = demo
    store = tmp_path / "store"
    extract_features(cat.meta, store, clip, id_map=cat.item_mapping, images=cat.images, device="cpu",
                     progress=False)
    from cliper.config.loader import load_config

    cfg = load_config(overrides=[f"dataset.path={cat.inter}", "model.name=vbpr", "train.epochs=2",
                                 "model.embedding_dim=16", f"features.store={store}"])
    train_run(cfg, tmp_path / "run", progress=False)
    return store, tmp_path / "run"


def test_a_reextracted_store_is_refused_but_the_same_extraction_again_is_not(demo, tmp_path):
    from cliper.features.extract import extract_features

    cat, clip = demo
    store, folder = _store_run(demo, tmp_path)
    extract_features(cat.meta, store, clip, id_map=cat.item_mapping, images=cat.images, device="cpu",
                     progress=False)  # the same inputs again: identical arrays, the run stays valid
    load_trained(folder)
    extract_features(cat.meta, store, clip, id_map=cat.item_mapping, images=cat.images, device="cpu",
                     views="mmrec-text", progress=False, force=True)
    with pytest.raises(CliperError, match=f"cannot evaluate {folder}: .* the feature store {store} was re-extracted"):
        load_trained(folder)


def test_the_experiment_runner_refuses_to_reuse_a_run_on_changed_inputs(tmp_path):
    from cliper.experiments.compare import run_compare
    from cliper.experiments.spec import DatasetEntry, ExperimentSpec

    inputs = write_inputs(tmp_path / "in")
    spec = ExperimentSpec(
        name="t", datasets={"t": DatasetEntry(path=str(inputs["inter"]))}, backbones=["vbpr"], seeds=[0],
        featuresets={"vanilla": {"features.image": str(inputs["image"])},
                     "cliper": {"features.image": str(inputs["image"]), "features.text": str(inputs["text"])}},
        overrides={"train.epochs": 2, "model.embedding_dim": 16})
    out = tmp_path / "exp"
    run_compare(spec, out, progress=False)
    run_compare(spec, out, progress=False)  # unchanged: the finished runs are reused
    _move_rows_to_test(inputs["inter"])
    with pytest.raises(CliperError, match="cannot reuse the finished run .* the dataset"):
        run_compare(spec, out, progress=False)


def test_a_run_without_a_provenance_record_is_evaluated_with_a_warning(run, caplog):
    _, folder = run
    (folder / "provenance.json").unlink()
    with caplog.at_level(logging.WARNING):
        load_trained(folder)
    assert "inputs cannot be checked" in caplog.text
