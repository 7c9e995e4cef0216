"""Shared checks for the multimodal backbones on a tiny generated graph (imported by test_<model>.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cliper.evaluation import Evaluator
from cliper.models import Batch, ModelContext, get_model_class
from cliper.testing import tiny_dataset, tiny_features

N_USERS, N_ITEMS = 40, 30


def data():
    return tiny_dataset(N_USERS, N_ITEMS, per_user=8, seed=0)


def build(name, features=None, cache_dir: Path | None = None, seed=0, **params):
    cls = get_model_class(name)
    torch.manual_seed(seed)
    feats = tiny_features(N_ITEMS, 16, 12, seed=0) if features is None else features
    ctx = ModelContext(train=data().train_view(), features=feats, cache_dir=cache_dir)
    return cls(ctx, cls.Params(**params))


def batch(seed=0, size=64) -> Batch:
    d = data()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(d.train), size=size, replace=False)
    from cliper.data.sampling import NegativeSampler

    users = d.train.users[pick]
    neg = NegativeSampler(d.train_matrix).sample(users, rng)
    return Batch(torch.from_numpy(users), torch.from_numpy(d.train.items[pick]), torch.from_numpy(neg))


def loss_at(model, b, seed=123) -> float:
    torch.manual_seed(seed)  # same dropout masks for before/after comparisons
    with torch.no_grad():
        return float(model.calculate_loss(b))


def check_step_lowers_loss(name, lr=1e-2, **params):
    model = build(name, **params)
    model.train()
    model.pre_epoch_hook(1)
    b = batch()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    before = loss_at(model, b)
    torch.manual_seed(123)
    opt.zero_grad()
    loss = model.calculate_loss(b)
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    after = loss_at(model, b)
    assert after < before, (before, after)


def check_scores_shape(name, **params):
    model = build(name, **params)
    model.eval()
    users = torch.tensor([0, 5, 7, 39])
    scores = model.full_sort_predict(users)
    assert scores.shape == (4, N_ITEMS) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()  # the model itself never masks train items


def _train_steps(model, steps=3):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(1, steps + 1):
        model.train()
        model.pre_epoch_hook(epoch)
        opt.zero_grad()
        model.calculate_loss(batch(epoch)).backward()
        opt.step()
    model.eval()
    return model.full_sort_predict(torch.arange(N_USERS))


def check_seeded_runs_identical(name, **params):
    torch.manual_seed(7)
    a = _train_steps(build(name, seed=3, **params))
    torch.manual_seed(7)
    b = _train_steps(build(name, seed=3, **params))
    assert torch.equal(a, b)
    torch.manual_seed(7)
    c = _train_steps(build(name, seed=4, **params))
    assert not torch.equal(a, c)


def check_evaluator_masks_train_items(name, **params):
    d = data()
    model = build(name, **params)
    _train_steps(model, 1)
    users, top = Evaluator(d, topk=(10,), metrics=("recall",), batch_size=16).top_items(model, "valid", 10)
    train = d.train_matrix
    assert all(train[u, i] == 0 for u, row in zip(users, top) for i in row)
    metrics = Evaluator(d, topk=(10, 20), metrics=("recall", "ndcg")).evaluate(model, "valid")
    assert 0.0 <= metrics["recall@20"] <= 1.0


def check_eval_computes_once_per_pass(name, attribute, **params):
    """Full ranking in several user chunks runs ``attribute`` (the propagation) once per pass."""
    model = build(name, **params)
    calls = {"n": 0}
    original = getattr(model, attribute)

    def counted(*a, **k):
        calls["n"] += 1
        return original(*a, **k)

    setattr(model, attribute, counted)
    Evaluator(data(), topk=(10,), metrics=("recall",), batch_size=7).evaluate(model, "valid")
    assert calls["n"] == 1
    Evaluator(data(), topk=(10,), metrics=("recall",), batch_size=7).evaluate(model, "test")
    assert calls["n"] == 2  # .eval() clears the cache between passes


def check_trainable_fusion_gets_gradients(name, **params):
    feats = tiny_features(N_ITEMS, 16, 12, seed=0, views=3, fusion="mlp")
    model = build(name, features=feats, **params)
    model.train()
    model.pre_epoch_hook(1)
    torch.manual_seed(0)
    model.calculate_loss(batch()).backward()
    grads = [p.grad for p in model.features.fusion.parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def check_single_modality(name, modality, **params):
    rng = np.random.default_rng(0)
    from cliper.features.item_features import ItemFeatures

    x = rng.standard_normal((N_ITEMS, 9)).astype(np.float32)
    model = build(name, features=ItemFeatures(**{modality: x}), **params)
    model.train()
    model.pre_epoch_hook(1)
    assert torch.isfinite(model.calculate_loss(batch()))
    model.eval()
    assert model.full_sort_predict(torch.arange(3)).shape == (3, N_ITEMS)


def check_graph_cache_follows_features(name, tmp_path, **params):
    """Same features: cache hit; changed features: a new key and a different graph."""
    first = build(name, cache_dir=tmp_path, **params)
    files = sorted((tmp_path / "knn").glob("*.npz"))
    assert len(files) == 2 and first.knn_cache.misses == 2
    again = build(name, cache_dir=tmp_path, **params)
    assert again.knn_cache.hits == 2 and again.knn_cache.misses == 0
    assert again.graph_keys == first.graph_keys
    assert sorted((tmp_path / "knn").glob("*.npz")) == files
    other = build(name, features=tiny_features(N_ITEMS, 16, 12, seed=1), cache_dir=tmp_path, **params)
    assert other.knn_cache.misses == 2
    assert set(other.graph_keys.values()).isdisjoint(first.graph_keys.values())
    assert len(list((tmp_path / "knn").glob("*.npz"))) == 4
    return first, again, other
