"""BPR and LightGCN against the contract and their papers' equations."""

import pytest
import torch

from cliper.graphs.adjacency import normalized_bipartite
from cliper.models import Batch, ModelContext, get_model_class
from cliper.testing import tiny_dataset


def _model(name, seed=0, **params):
    data = tiny_dataset()
    cls = get_model_class(name)
    torch.manual_seed(seed)
    return cls(ModelContext(train=data.train_view()), cls.Params(**params)), data


def _batch(data):
    u = torch.from_numpy(data.train.users[:32])
    p = torch.from_numpy(data.train.items[:32])
    return Batch(u, p, (p + 7) % data.n_items)


@pytest.mark.parametrize("name", ["bpr", "lightgcn"])
def test_step_lowers_loss_and_scores_shape(name):
    model, data = _model(name)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    batch = _batch(data)
    before = model.calculate_loss(batch)
    before.backward()
    opt.step()
    after = model.calculate_loss(batch)
    assert after.item() < before.item()
    model.eval()
    scores = model.full_sort_predict(torch.arange(5))
    assert scores.shape == (5, data.n_items)


@pytest.mark.parametrize("name", ["bpr", "lightgcn"])
def test_seeded_construction_is_identical(name):
    a, _ = _model(name, seed=3)
    b, _ = _model(name, seed=3)
    a.eval(), b.eval()
    assert torch.equal(a.full_sort_predict(torch.arange(4)), b.full_sort_predict(torch.arange(4)))


def test_lightgcn_propagation_matches_dense_formula():
    model, data = _model("lightgcn", n_layers=2)
    a = torch.tensor(normalized_bipartite(data.train_matrix).toarray())
    e0 = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach()
    expected = (e0 + a @ e0 + a @ (a @ e0)) / 3
    users, items = model.propagate()
    assert torch.allclose(torch.cat([users, items]).detach(), expected, atol=1e-5)


def test_lightgcn_gradient_through_sparse_graph_matches_dense():
    model, data = _model("lightgcn", n_layers=2)
    batch = _batch(data)
    model.calculate_loss(batch).backward()
    g_sparse = model.user_embedding.weight.grad.clone()
    # dense reference
    a = torch.tensor(normalized_bipartite(data.train_matrix).toarray())
    e0 = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach().requires_grad_(True)
    out = (e0 + a @ e0 + a @ (a @ e0)) / 3
    u, i = out[: data.n_users], out[data.n_users:]
    from cliper.models.layers import bpr_loss, l2_penalty
    ub, pb, nb = u[batch.users], i[batch.pos_items], i[batch.neg_items]
    loss = bpr_loss((ub * pb).sum(1), (ub * nb).sum(1)) + 1e-4 * l2_penalty("norm",
        e0[batch.users], e0[data.n_users + batch.pos_items], e0[data.n_users + batch.neg_items])
    loss.backward()
    assert torch.allclose(g_sparse, e0.grad[: data.n_users], atol=1e-6)


def test_eval_cache_cleared_when_training_resumes():
    model, data = _model("lightgcn")
    model.eval()
    s1 = model.full_sort_predict(torch.arange(3))
    model.train()
    with torch.no_grad():
        model.user_embedding.weight.add_(1.0)
    model.eval()
    s2 = model.full_sort_predict(torch.arange(3))
    assert not torch.allclose(s1, s2)


@pytest.mark.parametrize("name", ["bpr", "lightgcn"])
def test_ranking_follows_the_trained_model(name):
    from cliper.testing import backbones as C

    C.check_ranking_follows_the_trained_model(name)


@pytest.mark.parametrize(("name", "normal"), [("bpr", True), ("lightgcn", False)])
def test_initialisation_follows_mmrec(name, normal):
    """MMRec: BPR applies xavier_normal_initialization, LightGCN xavier_uniform_. A normal draw
    exceeds the uniform's bound sqrt(6 / (fan_in + fan_out)) for ~8% of entries; a uniform never does."""
    model, _ = _model(name)
    w = model.user_embedding.weight.detach()
    bound = (6.0 / (w.shape[0] + w.shape[1])) ** 0.5
    beyond = (w.abs() > bound).float().mean().item()
    assert (beyond > 0.02) if normal else (beyond == 0.0)
