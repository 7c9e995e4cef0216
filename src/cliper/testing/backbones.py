"""The model-contract test kit: checks every recommender must pass on a tiny generated graph.

Anyone adding a model under ``cliper.models`` runs these from ``tests/models/test_<model>.py``
(``from cliper.testing import backbones as C``) so all backbones answer to the same contract:
it builds from a ``ModelContext``, one step lowers the loss, full ranking has the right shape,
seeded runs repeat, full ranking follows the trained model's scores, features matter, single-modality inputs
work, a trainable fusion learns with the model, and cached graphs follow the features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cliper.data.interactions import InteractionData
from cliper.data.sampling import NegativeSampler
from cliper.evaluation import Evaluator
from cliper.features.item_features import ItemFeatures
from cliper.models import Batch, ModelContext, Recommender, get_model_class
from cliper.testing import tiny_dataset, tiny_features

N_USERS, N_ITEMS = 40, 30
LOSS_SEED = 123  # reseeded before each compared loss: identical dropout masks before and after a step


def data() -> InteractionData:
    return tiny_dataset(N_USERS, N_ITEMS, per_user=8, seed=0)


def build(name: str, features: ItemFeatures | None = None, cache_dir: Path | None = None, seed: int = 0, **params):
    """Model ``name`` on the tiny graph, initialised under ``seed``; default features are 16-d image, 12-d text."""
    cls = get_model_class(name)
    torch.manual_seed(seed)
    feats = tiny_features(N_ITEMS, 16, 12, seed=0) if features is None else features
    return cls(ModelContext(train=data().train_view(), features=feats, cache_dir=cache_dir), cls.Params(**params))


def make_batch(seed: int = 0, size: int = 64) -> Batch:
    """``size`` train interactions drawn under ``seed``, each with a sampled negative."""
    d = data()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(d.train), size=size, replace=False)
    users = d.train.users[pick]
    neg = NegativeSampler(d.train_matrix).sample(users, rng)
    return Batch(torch.from_numpy(users), torch.from_numpy(d.train.items[pick]), torch.from_numpy(neg))


def loss_at(model: Recommender, b: Batch, seed: int = LOSS_SEED) -> float:
    torch.manual_seed(seed)  # same dropout masks for before/after comparisons
    with torch.no_grad():
        return float(model.calculate_loss(b))


def check_step_lowers_loss(name: str, lr: float = 1e-2, **params) -> None:
    model = build(name, **params)
    model.train()
    model.pre_epoch_hook(1)
    b = make_batch()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    before = loss_at(model, b)
    torch.manual_seed(LOSS_SEED)
    opt.zero_grad()
    loss = model.calculate_loss(b)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    opt.step()
    after = loss_at(model, b)
    assert after < before, (before, after)


def check_scores_shape(name: str, **params) -> None:
    model = build(name, **params)
    model.eval()
    users = torch.tensor([0, 3, 5, 7, 17, N_USERS - 1])
    scores = model.full_sort_predict(users)
    assert scores.shape == (len(users), N_ITEMS) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()  # the model itself never masks train items; the evaluator does


def train_steps(model: Recommender, steps: int = 3) -> torch.Tensor:
    """``steps`` Adam steps (one "epoch" each, with its pre_epoch_hook), then scores of every user."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(1, steps + 1):
        model.train()
        model.pre_epoch_hook(epoch)
        opt.zero_grad()
        model.calculate_loss(make_batch(epoch)).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return model.full_sort_predict(torch.arange(N_USERS))


def trained_scores(name: str, steps: int = 3, seed: int = 0, features: ItemFeatures | None = None, **params):
    model = build(name, features=features, seed=seed, **params)
    torch.manual_seed(seed)
    return train_steps(model, steps)


def check_seeded_runs_identical(name: str, **params) -> None:
    a = trained_scores(name, seed=0, **params)
    b = trained_scores(name, seed=0, **params)
    c = trained_scores(name, seed=1, **params)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def _check_lists_rank_by_scores(model: Recommender, d: InteractionData) -> torch.Tensor:
    """The evaluator's lists (ranked in user chunks of 16) are the unmasked items in the order of ONE
    full pass of the model's scores; returns those scores."""
    train = d.train_matrix
    k = N_ITEMS - int(np.diff(train.indptr).max())  # every unmasked item fits in the list
    users, top = Evaluator(d, topk=(10,), metrics=("recall",), batch_size=16).top_items(model, "valid", k)
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(torch.arange(N_USERS)).float()
    assert torch.isfinite(scores).all(), "full_sort_predict returned non-finite scores"
    for u, items in zip(users, top):
        row = scores[u]
        seen = set(train.indices[train.indptr[u] : train.indptr[u + 1]].tolist())
        free = torch.tensor(sorted(set(range(N_ITEMS)) - seen))
        expected = torch.sort(row[free], descending=True).values[: len(items)]
        torch.testing.assert_close(row[torch.as_tensor(items)], expected, atol=1e-5, rtol=1e-5)
    return scores


def check_ranking_follows_the_trained_model(name: str, **params) -> None:
    """What the model (not the evaluator) owes full ranking, checks that can fail:

    - scores are finite and tell items apart (not one value per user);
    - the evaluator's chunked lists follow one full pass of ``full_sort_predict`` (a model whose
      scores depend on which users share a chunk, or on a stale cache, fails);
    - ``score_embeddings`` multiply out to ``full_sort_predict`` (what serving bundles rank with);
    - after more training the lists follow the NEW weights (the eval cache was dropped).
    """
    check_model_ranking(build(name, **params))


def check_model_ranking(model: Recommender) -> None:
    """:func:`check_ranking_follows_the_trained_model` on an already built model (tiny graph)."""
    d = data()
    train_steps(model, 1)
    before = _check_lists_rank_by_scores(model, d)
    assert (before.max(1).values - before.min(1).values > 0).any(), "every item gets the same score"
    try:
        users, items = model.export_embeddings()
    except NotImplementedError:
        users = None
    if users is not None:
        torch.testing.assert_close(users @ items.T, before, atol=1e-4, rtol=1e-4)
    train_steps(model, 2)
    after = _check_lists_rank_by_scores(model, d)
    assert not torch.allclose(before, after), "scores did not change after training: stale evaluation cache?"


def check_evaluator_masks_train_items(name: str, **params) -> None:
    """Old name of :func:`check_ranking_follows_the_trained_model` (the masking itself is the
    evaluator's and is tested in tests/evaluation); kept so plugin test files keep working."""
    check_ranking_follows_the_trained_model(name, **params)


def check_eval_computes_once_per_pass(name: str, attribute: str, **params) -> None:
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
    assert calls["n"] == 1  # nothing changed since the valid pass: the test pass reuses it
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # any update (optimiser step, load_state_dict) recomputes
    Evaluator(data(), topk=(10,), metrics=("recall",), batch_size=7).evaluate(model, "test")
    assert calls["n"] == 2


def check_features_matter(name: str, **params) -> None:
    """Different feature content gives different scores (the model really reads its features)."""
    with torch.no_grad():
        base = build(name, **params).eval().full_sort_predict(torch.arange(N_USERS))
        other = build(name, features=tiny_features(N_ITEMS, 16, 12, seed=5), **params)
        changed = other.eval().full_sort_predict(torch.arange(N_USERS))
    assert not torch.allclose(base, changed)


def check_single_modality(name: str, modality: str | None = None, **params) -> None:
    """Only ``modality`` (default: image alone, then text alone) trains and ranks."""
    rng = np.random.default_rng(0)
    for m in ("image", "text") if modality is None else (modality,):
        x = rng.standard_normal((N_ITEMS, 9)).astype(np.float32)
        model = build(name, features=ItemFeatures(**{m: x}), **params)
        model.train()
        model.pre_epoch_hook(1)
        loss = model.calculate_loss(make_batch())
        loss.backward()
        assert torch.isfinite(loss)
        model.eval()
        assert model.full_sort_predict(torch.arange(5)).shape == (5, N_ITEMS)


def check_trainable_fusion_learns(name: str, fusion: str = "mlp", steps: int = 3, **params) -> None:
    """A trainable fusion inside the model gets gradients and changes the fused text every step."""
    feats = tiny_features(N_ITEMS, 16, 12, seed=0, views=4, fusion=fusion)
    model = build(name, features=feats, **params)
    fusion_params = dict(feats.fusion.named_parameters())
    assert fusion_params
    assert all(any(p is q for q in model.parameters()) for p in fusion_params.values())  # optimised with the model
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        model.train()
        model.pre_epoch_hook(step + 1)
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


def check_graph_cache_follows_features(name: str, tmp_path: Path, **params):
    """Same features: cache hit; changed features: a new key and a different graph (two kNN graphs a model)."""
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


def check_trained_fusion_reaches_scores(name: str, fusion: str = "mlp", epochs: int = 4, **params) -> None:
    """A kNN-graph backbone's graph follows a trainable fusion (issue 12): after training, the fusion's
    output differs from its initialisation, the followed graph was rebuilt from it (neighbour lists
    changed), and putting the initial fusion weights back (graph rebuilt from them) changes the scores."""
    import copy

    from cliper.models.fused_graphs import refresh_fused_graphs

    feats = tiny_features(N_ITEMS, 16, 12, seed=0, views=4, fusion=fusion)
    feats.reset_parameters()
    params.setdefault("graph_refresh_every", 1)
    model = build(name, features=feats, **params)
    assert model.fused_graphs.modalities == ["text"]
    with torch.no_grad():
        init_text = feats.get("text").clone()
    init_neighbours = model.fused_graphs.text_indices.clone()
    torch.manual_seed(0)
    scores = train_steps(model, epochs)
    assert feats.fusion_change() > 0
    with torch.no_grad():
        assert not torch.allclose(feats.get("text"), init_text, atol=1e-4)
    assert model.fused_graphs.refreshes == (epochs - 1) // params["graph_refresh_every"]
    assert not torch.equal(model.fused_graphs.text_indices, init_neighbours), "graph still the untrained fusion's"
    at_init = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in at_init.features.fusion.named_parameters():
            p.copy_(feats._fusion_init[n])
    refresh_fused_graphs(at_init)
    assert torch.equal(at_init.fused_graphs.text_indices, init_neighbours)  # same fusion weights, same graph
    at_init.eval()
    with torch.no_grad():
        assert not torch.allclose(at_init.full_sort_predict(torch.arange(N_USERS)), scores)
