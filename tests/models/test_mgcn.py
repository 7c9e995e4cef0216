"""MGCN on a tiny graph: contract checks, and its parts against small dense computations."""

from __future__ import annotations

import numpy as np
import torch

import cliper.testing.backbones as C
from cliper.features.item_features import ItemFeatures
from cliper.testing import tiny_features

NAME = "mgcn"


def test_one_step_lowers_loss():
    C.check_step_lowers_loss(NAME)


def test_scores_shape():
    C.check_scores_shape(NAME)


def test_seeded_runs_identical():
    C.check_seeded_runs_identical(NAME)


def test_evaluator_masks_train_items():
    C.check_evaluator_masks_train_items(NAME)


def test_eval_propagates_once_per_pass():
    C.check_eval_computes_once_per_pass(NAME, "propagate")


def test_features_matter():
    C.check_features_matter(NAME)


def test_trainable_fusion_gets_gradients():
    C.check_trainable_fusion_learns(NAME, "mlp")


def test_single_modality():
    C.check_single_modality(NAME)


def test_changing_features_changes_the_cached_graph(tmp_path):
    first, again, other = C.check_graph_cache_follows_features(NAME, tmp_path)
    for m in ("image", "text"):
        a = first.item_graphs[m].matrix.to_dense()
        assert torch.equal(a, again.item_graphs[m].matrix.to_dense())
        assert not torch.equal(a, other.item_graphs[m].matrix.to_dense())


# -- dense references ------------------------------------------------------------------------
def _dense_knn(x: np.ndarray, k: int) -> np.ndarray:
    """Cosine top-k (self included), similarity-weighted, D^-1/2 S D^-1/2 with D the row sums."""
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = z @ z.T
    s = np.zeros_like(sim)
    for i in range(len(sim)):
        top = np.argsort(-sim[i])[:k]
        s[i, top] = sim[i, top]
    d = s.sum(1) ** -0.5
    return d[:, None] * s * d[None, :]


def _dense_bipartite(r: np.ndarray) -> np.ndarray:
    u, i = r.shape
    a = np.zeros((u + i, u + i))
    a[:u, u:] = r
    a[u:, :u] = r.T
    deg = a.sum(1)
    d = np.where(deg > 0, deg, 1) ** -0.5 * (deg > 0)
    return d[:, None] * a * d[None, :]


def _t(x):
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def _dense_forward(model):
    """E_id, E_mm and E from the paper's equations, with dense matrices and the model's weights."""
    p = model.params
    r = C.data().train_matrix.toarray()
    a = _t(_dense_bipartite(r))
    nu = model.n_users
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    layers, e = [ego], ego
    for _ in range(p.n_ui_layers):
        e = a @ e
        layers.append(e)
    content = torch.stack(layers).mean(0)
    views = []
    for m in model.modal:
        x = model.features.get(m)
        proj, gate = model.projections[m], model.purifier_gates[m]
        h = model.item_embedding.weight * torch.sigmoid((x @ proj.weight.T + proj.bias) @ gate.weight.T + gate.bias)
        s = _t(_dense_knn(x.numpy(), p.knn_k))
        for _ in range(p.n_layers):
            h = s @ h
        views.append(torch.cat([a[:nu, nu:] @ h, h]))
    q1, q2 = model.query[0], model.query[2]
    scores = torch.stack([torch.tanh(v @ q1.weight.T + q1.bias) @ q2.weight.T for v in views], 1).squeeze(-1)
    beta = torch.softmax(scores, dim=1)  # [nodes, M]
    common = sum(beta[:, j : j + 1] * v for j, v in enumerate(views))
    side = common.clone()
    for j, m in enumerate(model.modal):
        g = model.preference_gates[m]
        side = side + torch.sigmoid(content @ g.weight.T + g.bias) * (views[j] - common)
    side = side / (len(views) + 1)
    return content, side, content + side


def test_item_graphs_are_the_dense_weighted_knn_graphs():
    feats = tiny_features(C.N_ITEMS, 16, 12, seed=0)
    model = C.build(NAME, features=feats, knn_k=4)
    for m in ("image", "text"):
        np.testing.assert_allclose(model.item_graphs[m].matrix.to_dense().numpy(),
                                   _dense_knn(feats.get(m).numpy(), 4), atol=1e-6)


def test_forward_matches_a_dense_computation_of_the_equations():
    model = C.build(NAME, knn_k=4, n_layers=2, n_ui_layers=3)
    with torch.no_grad():
        for mod in (model.query, *model.purifier_gates.values(), *model.preference_gates.values()):
            for prm in mod.parameters():
                torch.nn.init.normal_(prm, std=0.5)  # away from the 0.5-gates of a fresh init
        users, items, side, content = model.propagate()
        d_content, d_side, d_final = _dense_forward(model)
    torch.testing.assert_close(content, d_content, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(side, d_side, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat([users, items]), d_final, atol=1e-5, rtol=1e-4)


def test_single_modality_side_is_half_the_modality_view():
    x = np.random.default_rng(0).standard_normal((C.N_ITEMS, 9)).astype(np.float32)
    model = C.build(NAME, features=ItemFeatures(text=x))
    with torch.no_grad():
        _, _, side, _ = model.propagate()
        view = model.modality_views()["text"]
    torch.testing.assert_close(side, view / 2)


def test_loss_is_bpr_plus_half_squared_l2_plus_weighted_info_nce():
    model = C.build(NAME, cl_loss=0.3, reg_weight=0.01, cl_temperature=0.5)
    b = C.make_batch(size=16)
    with torch.no_grad():
        d_content, d_side, d_final = _dense_forward(model)
        nu = model.n_users
        u, pos, neg = d_final[b.users], d_final[nu + b.pos_items], d_final[nu + b.neg_items]
        bpr = -torch.log(torch.sigmoid((u * pos).sum(1) - (u * neg).sum(1))).mean()
        reg = 0.5 * (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / len(b.users)

        def nce(v1, v2, t):
            v1 = v1 / v1.norm(dim=1, keepdim=True)
            v2 = v2 / v2.norm(dim=1, keepdim=True)
            pos_s = torch.exp((v1 * v2).sum(1) / t)
            ttl = torch.exp(v1 @ v2.T / t).sum(1)
            return (-torch.log(pos_s / ttl)).mean()

        cl = nce(d_side[nu + b.pos_items], d_content[nu + b.pos_items], 0.5) + nce(d_side[b.users], d_content[b.users], 0.5)
        expected = bpr + 0.01 * reg + 0.3 * cl
        got = model.calculate_loss(b)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_export_embeddings_reproduce_full_ranking():
    model = C.build(NAME).eval()
    users = torch.arange(C.N_USERS)
    with torch.no_grad():
        u, i = model.export_embeddings()
        torch.testing.assert_close(model.full_sort_predict(users), u[users] @ i.T)
    assert u.shape == (C.N_USERS, 64) and i.shape == (C.N_ITEMS, 64)


def test_train_features_residual_gets_gradients():
    model = C.build(NAME, train_features=True)
    model.train()
    model.calculate_loss(C.make_batch()).backward()
    assert all(model.residuals[m].grad is not None and model.residuals[m].grad.abs().sum() > 0
               for m in ("image", "text"))


def test_params_are_validated():
    import pydantic
    import pytest

    from cliper.models.mgcn import MGCNParams

    for bad in ({"knn_k": 0}, {"embedding_dim": 0}, {"cl_temperature": 0.0}, {"n_layers": -1}, {"cl_loss": -1.0},
                {"knn_chunk_size": 0}, {"unknown": 1}):
        with pytest.raises(pydantic.ValidationError):
            MGCNParams(**bad)
