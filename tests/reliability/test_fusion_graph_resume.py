"""A graph that follows a trainable fusion survives kill -9 and resume bit for bit (issue 12).

FREEDOM with ``features.fusion=mlp`` rebuilds its text kNN graph every 2 epochs (before
epochs 3 and 5). Killed after epoch 3's checkpoint, the resumed epoch 4 must train on the
graph rebuilt before epoch 3 (restored from the checkpoint), not on the construction-time
graph of the untrained fusion.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from cliper.config.loader import load_config
from cliper.testing import tiny_dataset, write_inter
from cliper.testing.kill import killed_in_child
from cliper.training.runner import train_run


def _store(path: Path, n_items: int, views: int = 3, dim: int = 12, seed: int = 0) -> Path:
    """A minimal finished feature store (image, views, similarity, ids, manifest)."""
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((n_items, dim)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    vw = rng.standard_normal((views, n_items, dim)).astype(np.float32)
    vw /= np.linalg.norm(vw, axis=2, keepdims=True)
    path.mkdir(parents=True)
    arrays = {"image": img, "image_mask": np.ones(n_items, dtype=bool), "views": vw,
              "similarity": np.einsum("vnd,nd->nv", vw, img).astype(np.float32),
              "item_ids": np.arange(n_items, dtype=np.int64)}
    for name, arr in arrays.items():
        np.save(path / f"{name}.npy", arr)
    names = [f"v{i}" for i in range(views)]
    (path / "manifest.json").write_text(json.dumps({
        "format": "cliper-feature-store/1", "n_items": n_items, "dim": dim,
        "views": {"names": names, "global_views": []}, "images": {"n_real": n_items, "n_missing": 0}}))
    return path


def _config(root: Path):
    inter = root / "t.inter"
    if not inter.is_file():
        write_inter(tiny_dataset(n_users=40, n_items=30, per_user=8, seed=2), inter)
        _store(root / "store", 30)
    return load_config(overrides=[
        f"dataset.path={inter}", "model.name=freedom", f"features.store={root / 'store'}", "features.fusion=mlp",
        "model.graph_refresh_every=2", "model.embedding_dim=16", "model.feat_embed_dim=16", "train.epochs=5",
        "train.patience=100", "train.batch_size=64", "eval.topk=[5,10]", "eval.valid_metric=recall@10"])


def _log(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def test_followed_graph_resumes_exactly_after_kill_9(tmp_path):
    cfg = _config(tmp_path)
    full = train_run(cfg, tmp_path / "full", progress=False)
    assert full["fusion"]["method"] == "mlp" and full["fusion"]["weight_change"] > 0
    run = tmp_path / "killed"
    killed_in_child("train.checkpoint:3", lambda: train_run(cfg, run, progress=False))
    assert not (run / "metrics.json").exists()
    resumed = train_run(cfg, run, resume=True, progress=False)
    for key in ("best_epoch", "valid", "test", "epochs_run", "fusion"):
        assert resumed[key] == full[key], key
    assert _log(run) == _log(tmp_path / "full")
    wa, wb = (torch.load(d / "best.pt", weights_only=True) for d in (tmp_path / "full", run))
    assert "fused_graphs.text_indices" in wa
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
