"""No file cliper reads runs code: a pickle payload planted in each kind of file is refused or ignored.

Each test first proves the planted file is live (an unsafe loader runs the payload, which
creates a marker file), then has cliper read it: the marker must not appear and the user
gets one clear error (or, for disposable caches, one warning and a rebuilt cache).
"""

from __future__ import annotations

import logging
import pickle
import shutil

import numpy as np
import pytest
import torch
from safety_helpers import Payload, run_cli

from cliper.errors import CliperError, DataError


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "PAYLOAD_RAN"


def _plant_torch(path, marker):
    torch.save({"model": Payload(marker)}, path)
    torch.load(path, weights_only=False)  # control: an unsafe load runs it
    assert marker.exists()
    marker.unlink()


def _plant_npy(path, marker):
    np.save(path, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    np.load(path, allow_pickle=True)
    assert marker.exists()
    marker.unlink()


def _plant_npz(path, marker, **extra):
    np.savez(path, format=np.array([Payload(marker)], dtype=object), **extra)
    with np.load(path, allow_pickle=True) as z:
        z["format"]
    assert marker.exists()
    marker.unlink()


def _interrupted_copy(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    (run / "metrics.json").unlink()  # looks interrupted: --resume loads checkpoint.pt
    return run


def _one_error_line(res, *fragments):
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def test_planted_checkpoint_pt_is_refused_on_resume(trained, tmp_path, marker):
    inputs, _ = trained
    run = _interrupted_copy(trained, tmp_path)
    _plant_torch(run / "checkpoint.pt", marker)
    from safety_helpers import cli_train

    res = cli_train(inputs, "vbpr", run, "--resume", epochs=3)
    _one_error_line(res, str(run / "checkpoint.pt"), "refused to load")
    assert not marker.exists()


def test_planted_best_pt_is_refused_by_evaluate(trained, tmp_path, marker):
    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    _plant_torch(run / "best.pt", marker)
    res = run_cli("evaluate", str(run))
    _one_error_line(res, str(run / "best.pt"), "refused to load")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["checkpoint.pt", "best.pt"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_checkpoint_gives_one_error_naming_the_file(trained, tmp_path, name, damage):
    from cliper.training.runner import load_trained

    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    data = (run / name).read_bytes()
    (run / name).write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00not a checkpoint" * 50,
                              "empty": b""}[damage])
    with pytest.raises(DataError, match="unreadable checkpoint") as err:
        load_trained(run, which="best" if name == "best.pt" else "last")
    assert str(run / name) in str(err.value) and "\n" not in str(err.value)


def test_truncated_best_pt_via_cli_is_one_line(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    data = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(data[: len(data) // 3])
    _one_error_line(run_cli("evaluate", str(run)), str(run / "best.pt"), "unreadable checkpoint")


def test_python_tags_in_a_run_config_are_refused(trained, tmp_path, marker):
    from cliper.training.runner import load_trained

    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    (run / "config.yaml").write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(DataError, match="config.yaml"):
        load_trained(run)
    assert not marker.exists()


def test_planted_per_user_metrics_are_refused(trained, tmp_path, marker):
    from cliper.training.runner import load_per_user

    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    np.savez(run / "test_per_user.npz", users=np.array([Payload(marker)], dtype=object))
    with np.load(run / "test_per_user.npz", allow_pickle=True) as z:  # control: the planted file is live
        z["users"]
    assert marker.exists()
    marker.unlink()
    with pytest.raises(DataError, match="test_per_user.npz"):
        load_per_user(run)
    assert not marker.exists()


def test_planted_vanilla_feature_file_is_refused(trained, tmp_path, marker):
    from cliper.features.item_features import ItemFeatures

    _plant_npy(tmp_path / "image_feat.npy", marker)
    with pytest.raises(DataError, match="image_feat.npy"):
        ItemFeatures.from_files(tmp_path / "image_feat.npy", n_items=30)
    assert not marker.exists()


def test_planted_feature_store_array_is_refused(demo, tmp_path, marker):
    from cliper.features.extract import extract_features
    from cliper.features.store import FeatureStore

    cat, clip = demo
    store = tmp_path / "store"
    extract_features(cat.meta, store, clip, id_map=cat.item_mapping, images=cat.images, device="cpu",
                     progress=False)
    _plant_npy(store / "views.npy", marker)
    with pytest.raises(DataError, match="views.npy"):
        FeatureStore.open(store)
    assert not marker.exists()


def test_planted_extraction_chunk_is_recomputed_not_run(demo, tmp_path, marker, caplog):
    from cliper.features.extract import extract_features

    cat, clip = demo
    store = tmp_path / "store"
    first = extract_features(cat.meta, store, clip, id_map=cat.item_mapping, images=cat.images, device="cpu",
                             chunk_size=32, progress=False)
    views = np.array(first.store.views)
    chunk = sorted((store / "chunks").glob("chunk_*.npz"))[0]
    np.savez(chunk, views=np.array([Payload(marker)], dtype=object))
    with np.load(chunk, allow_pickle=True) as z:  # control: the planted chunk is live
        z["views"]
    assert marker.exists()
    marker.unlink()
    (store / "manifest.json").unlink()  # an unfinished store: the chunks are read back
    with caplog.at_level(logging.WARNING):
        again = extract_features(cat.meta, store, clip, id_map=cat.item_mapping, images=cat.images, device="cpu",
                                 chunk_size=32, progress=False)
    assert not marker.exists()
    assert again.work["chunks_computed"] == 1 and again.work["chunks_reused"] == 1
    assert "unreadable chunk" in caplog.text
    np.testing.assert_array_equal(np.asarray(again.store.views), views)


def test_planted_knn_cache_is_rebuilt_not_run(tmp_path, marker, caplog):
    from cliper.testing import backbones as C

    first = C.build("lattice", cache_dir=tmp_path / "cache")
    files = sorted((tmp_path / "cache" / "knn").glob("*.npz"))
    assert len(files) == 2
    for f in files:
        _plant_npz(f, marker)
    with caplog.at_level(logging.WARNING):
        again = C.build("lattice", cache_dir=tmp_path / "cache")
    assert not marker.exists()
    assert again.knn_cache.misses == 2 and again.knn_cache.hits == 0
    assert "ignoring unreadable kNN cache" in caplog.text
    for m in first.modal:  # the rebuilt graphs equal the first ones
        a, b = first._original[m], again._original[m]
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_planted_user_graph_cache_is_rebuilt_not_run(tmp_path, marker, caplog):
    from cliper.graphs.user_graph import build_user_graph, user_graph_cache_path
    from cliper.testing import tiny_dataset

    train = tiny_dataset().train_matrix
    fresh = build_user_graph(train, k=5, cache_dir=tmp_path)
    path = user_graph_cache_path(tmp_path, train, 5)
    assert path.is_file()
    _plant_npz(path, marker)
    with caplog.at_level(logging.WARNING):
        again = build_user_graph(train, k=5, cache_dir=tmp_path)
    assert not marker.exists()
    assert "ignoring unreadable user graph cache" in caplog.text
    assert (again != fresh).nnz == 0


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """A 1-epoch tiny fine-tuning run on a 60-item demo catalogue."""
    from cliper.demo import generate_demo_catalog
    from cliper.finetune import FinetuneConfig, finetune_clip

    root = tmp_path_factory.mktemp("ft")
    cat = generate_demo_catalog(root / "cat", n_items=60, n_users=10, seed=5, progress=False)
    cfg = FinetuneConfig(epochs=1, **FT_SMALL)
    finetune_clip(cat.meta, cat.images, root / "run", config=cfg, progress=False)
    return cat, root / "run"


FT_SMALL = dict(batch_size=8, held_out_fraction=0.25, hidden_size=32, layers=1, heads=2, projection_dim=16,
                bpe_merges=300)


def test_planted_finetune_trainer_state_is_refused(finetuned, tmp_path, marker):
    from cliper.finetune import FinetuneConfig, finetune_clip

    cat, src = finetuned
    run = tmp_path / "run"
    shutil.copytree(src, run)
    state = run / "checkpoints" / "epoch-0001" / "trainer_state.pt"
    _plant_torch(state, marker)
    with pytest.raises(DataError, match="refused to load") as err:
        finetune_clip(cat.meta, cat.images, run, config=FinetuneConfig(epochs=2, **FT_SMALL), progress=False)
    assert str(state) in str(err.value)
    assert not marker.exists()


def test_planted_finetuned_weights_are_refused_on_resume_and_by_extract(finetuned, tmp_path, marker):
    from cliper.features.extract import extract_features
    from cliper.finetune import FinetuneConfig, finetune_clip

    cat, src = finetuned
    run = tmp_path / "run"
    shutil.copytree(src, run)
    for folder in (run / "checkpoints" / "epoch-0001", run / "best"):
        (folder / "model.safetensors").unlink()  # a pickle weight file in its place
        with open(folder / "pytorch_model.bin", "wb") as fh:
            pickle.dump(Payload(marker), fh, protocol=2)
    with pytest.raises(CliperError, match="cannot load a CLIP model"):
        finetune_clip(cat.meta, cat.images, run, config=FinetuneConfig(epochs=2, **FT_SMALL), progress=False)
    assert not marker.exists()
    with pytest.raises(CliperError, match="cannot load CLIP model"):
        extract_features(cat.meta, tmp_path / "store", str(run / "best"), id_map=cat.item_mapping,
                         images=cat.images, device="cpu", progress=False)
    assert not marker.exists()
