"""Helpers for the experiment tests: a tiny graph on disk, a small feature store folder, a fake trainer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

VIEWS = ("title", "brand", "categories", "description", "global")


def write_inter(data, path: Path) -> Path:
    lines = ["userID\titemID\tx_label"]
    for label, split in enumerate((data.train, data.valid, data.test)):
        lines += [f"{u}\t{i}\t{label}" for u, i in zip(split.users, split.items)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_store(path: Path, n_items: int, views=VIEWS, dim: int = 16, seed: int = 0, missing=(),
                similarity: np.ndarray | None = None) -> Path:
    """A finished feature-store folder (image, image_mask, views, similarity, item_ids, manifest.json)."""
    rng = np.random.default_rng(seed)
    V = len(views)
    img = rng.standard_normal((n_items, dim)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    # views correlated with the image by different amounts, so similarities differ per view
    vw = np.stack([img * (0.2 * (v + 1)) + rng.standard_normal((n_items, dim)).astype(np.float32) for v in range(V)])
    vw /= np.linalg.norm(vw, axis=2, keepdims=True)
    mask = np.ones(n_items, dtype=bool)
    mask[list(missing)] = False
    sim = np.einsum("vnd,nd->nv", vw, img).astype(np.float32) if similarity is None else np.asarray(similarity, np.float32)
    sim[~mask] = 0.0
    path.mkdir(parents=True, exist_ok=True)
    for name, arr in (("image", img), ("image_mask", mask), ("views", vw.astype(np.float32)),
                      ("similarity", sim), ("item_ids", np.arange(n_items, dtype=np.int64))):
        np.save(path / f"{name}.npy", arr)
    manifest = {"format": "cliper-feature-store/1", "n_items": n_items, "dim": dim,
                "views": {"names": list(views), "global_views": ["global"] if "global" in views else []},
                "images": {"n_real": int(mask.sum()), "n_missing": int((~mask).sum())}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def _fake_fusion_record(cfg) -> dict:
    """What a real run records for its fusion; a fake run "trained" a trainable one (weights moved)."""
    from cliper.fusion import FUSIONS

    trainable = FUSIONS[cfg.features.fusion].trainable
    return {"method": cfg.features.fusion, "trainable": trainable, "weight_change": 0.5 if trainable else None}


def install_fake_training(monkeypatch, score):
    """Replace ``train_run`` by a fake that writes a finished run folder in no time.

    ``score(cfg) -> (valid recall@20, test recall@20)``. Returns the list of configs trained.
    Per-user test values are constant and equal to the test score, so means and paired tests stay consistent.
    """
    import cliper.training.runner as training

    calls = []

    def fake_train_run(cfg, run_dir, resume=False, progress=True, data=None, features=None):
        run_dir = Path(run_dir)
        if (run_dir / training.METRICS_FILE).is_file():
            return json.loads((run_dir / training.METRICS_FILE).read_text())
        calls.append(cfg)
        valid, test = score(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        training.save_config(cfg, run_dir)
        mk = lambda v: {f"{m}@{k}": v * (k / 20) for m in ("recall", "ndcg") for k in (10, 20, 50)}  # noqa: E731
        metrics = {"model": cfg.model_name, "dataset": cfg.dataset.name, "seed": cfg.seed, "best_epoch": 1,
                   "valid": mk(valid), "test": mk(test), "valid_metric": "recall@20",
                   "features": training._feature_provenance(cfg), "code_version": "test",
                   "fusion": _fake_fusion_record(cfg)}
        users = np.arange(30)
        np.savez_compressed(run_dir / training.PER_USER_FILE, users=users,
                            **{k.replace("@", "_at_"): np.full(30, v, np.float32) for k, v in metrics["test"].items()})
        (run_dir / training.METRICS_FILE).write_text(json.dumps(metrics))
        return metrics

    monkeypatch.setattr(training, "train_run", fake_train_run)
    return calls
