"""Checks shared by the VBPR / MMGCN / GRCN / DualGNN tests on a tiny generated graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cliper.data.sampling import NegativeSampler
from cliper.evaluation import Evaluator
from cliper.features.item_features import ItemFeatures
from cliper.models import Batch, ModelContext, get_model_class
from cliper.testing import tiny_dataset, tiny_features

N_USERS, N_ITEMS = 40, 30


def data():
    return tiny_dataset(N_USERS, N_ITEMS, per_user=8, seed=0)


def build(name: str, features: ItemFeatures | None = None, cache_dir: Path | None = None, seed: int = 0, **params):
    cls = get_model_class(name)
    torch.manual_seed(seed)
    feats = tiny_features(N_ITEMS, 16, 12, seed=0) if features is None else features
    return cls(ModelContext(train=data().train_view(), features=feats, cache_dir=cache_dir), cls.Params(**params))


def make_batch(seed: int = 0, size: int = 64) -> Batch:
    d = data()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(d.train), size=size, replace=False)
    users = d.train.users[pick]
    neg = NegativeSampler(d.train_matrix).sample(users, rng)
    return Batch(torch.from_numpy(users), torch.from_numpy(d.train.items[pick]), torch.from_numpy(neg))


def _loss(model, b) -> float:
    torch.manual_seed(7)  # identical dropout masks before and after the step
    with torch.no_grad():
        return float(model.calculate_loss(b))


def check_step_lowers_loss(name: str, lr: float = 1e-2, **params) -> None:
    model = build(name, **params)
    model.train()
    b = make_batch()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    before = _loss(model, b)
    torch.manual_seed(7)
    loss = model.calculate_loss(b)
    assert loss.ndim == 0 and torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = _loss(model, b)
    assert after < before, (before, after)


def check_scores_shape(name: str, **params) -> None:
    model = build(name, **params)
    model.eval()
    scores = model.full_sort_predict(torch.tensor([0, 3, 17, N_USERS - 1]))
    assert scores.shape == (4, N_ITEMS) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()  # the model never masks; the evaluator does


def trained_scores(name: str, steps: int = 2, seed: int = 0, features: ItemFeatures | None = None, **params):
    model = build(name, features=features, seed=seed, **params)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(seed)
    for step in range(steps):
        model.train()
        model.pre_epoch_hook(step + 1)
        opt.zero_grad()
        model.calculate_loss(make_batch(step)).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return model.full_sort_predict(torch.arange(N_USERS))


def check_seeded_identical(name: str, **params) -> None:
    a = trained_scores(name, seed=0, **params)
    b = trained_scores(name, seed=0, **params)
    c = trained_scores(name, seed=1, **params)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def check_evaluator_masks_train(name: str, **params) -> None:
    d = data()
    model = build(name, **params)
    ev = Evaluator(d, topk=(10,), metrics=("recall", "ndcg"))
    train = d.train_matrix
    k = N_ITEMS - int(np.diff(train.indptr).max())  # every unmasked item fits in the list
    users, top = ev.top_items(model, "valid", k)
    for u, items in zip(users, top):
        assert not set(items.tolist()) & set(train.indices[train.indptr[u] : train.indptr[u + 1]].tolist())
    metrics = ev.evaluate(model, "valid")
    assert 0.0 <= metrics["recall@10"] <= 1.0 and 0.0 <= metrics["ndcg@10"] <= 1.0


def check_features_matter(name: str, **params) -> None:
    """Different feature content gives different scores (the model really reads its features)."""
    with torch.no_grad():
        base = build(name, **params).eval().full_sort_predict(torch.arange(N_USERS))
        other = build(name, features=tiny_features(N_ITEMS, 16, 12, seed=5), **params)
        changed = other.eval().full_sort_predict(torch.arange(N_USERS))
    assert not torch.allclose(base, changed)


def check_single_modality(name: str, **params) -> None:
    rng = np.random.default_rng(0)
    for feats in (
        ItemFeatures(image=rng.standard_normal((N_ITEMS, 16)).astype(np.float32)),
        ItemFeatures(text=rng.standard_normal((N_ITEMS, 12)).astype(np.float32)),
    ):
        model = build(name, features=feats, **params)
        model.train()
        loss = model.calculate_loss(make_batch())
        loss.backward()
        assert torch.isfinite(loss)
        assert model.eval().full_sort_predict(torch.arange(5)).shape == (5, N_ITEMS)


def check_trainable_fusion_learns(name: str, fusion: str, steps: int = 3, **params) -> None:
    """A trainable fusion inside the model gets gradients and changes the fused text every step."""
    feats = tiny_features(N_ITEMS, 16, 12, seed=0, views=4, fusion=fusion)
    model = build(name, features=feats, **params)
    fusion_params = dict(feats.fusion.named_parameters())
    assert fusion_params
    assert all(any(p is q for q in model.parameters()) for p in fusion_params.values())  # optimised with the model
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        model.train()
        opt.zero_grad()
        model.calculate_loss(make_batch(step)).backward()
        with torch.no_grad():
            before = feats.get("text").clone()
        grads = {n: p.grad for n, p in fusion_params.items()}
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), grads
        nonzero = {n for n, g in grads.items() if g.abs().sum() > 0}
        if fusion == "attention" and step == 0:
            # the query starts at 0 (pure SA), so only it moves on the first step
            assert "query" in nonzero
        else:
            assert nonzero == set(grads), (step, set(grads) - nonzero)
        opt.step()
        with torch.no_grad():
            after = feats.get("text")
        assert not torch.allclose(before, after), step
