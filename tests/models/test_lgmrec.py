"""LGMRec on a tiny graph: contract checks, and its parts against small dense computations."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import cliper.testing.backbones as C
from cliper.features.item_features import ItemFeatures

NAME = "lgmrec"


def test_one_step_lowers_loss():
    C.check_step_lowers_loss(NAME)


def test_scores_shape():
    C.check_scores_shape(NAME)


def test_seeded_runs_identical():
    C.check_seeded_runs_identical(NAME)
    C.check_seeded_runs_identical(NAME, eval_gumbel_noise=False)


def test_evaluator_masks_train_items():
    C.check_evaluator_masks_train_items(NAME)


def test_eval_propagates_once_per_pass():
    C.check_eval_computes_once_per_pass(NAME, "propagate")


def test_features_matter():
    C.check_features_matter(NAME, eval_gumbel_noise=False)


def test_trainable_fusion_gets_gradients():
    C.check_trainable_fusion_learns(NAME, "mlp")


def test_single_modality():
    C.check_single_modality(NAME)


# -- dense references ------------------------------------------------------------------------
def _dense_sym(r: np.ndarray) -> torch.Tensor:
    u, i = r.shape
    a = np.zeros((u + i, u + i))
    a[:u, u:] = r
    a[u:, :u] = r.T
    d = (a.sum(1) + 1e-7) ** -0.5  # the authors' D^-1/2 with their epsilon
    return torch.as_tensor(d[:, None] * a * d[None, :], dtype=torch.float32)


def _dense_forward(model):
    """E and the per-modality global embeddings from the paper's formulas, dense, noise-free."""
    p = model.params
    r_np = C.data().train_matrix.toarray()
    r = torch.as_tensor(r_np, dtype=torch.float32)
    a = _dense_sym(r_np)
    nu = model.n_users
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    layers, e = [ego], ego
    for _ in range(p.n_ui_layers):
        e = a @ e
        layers.append(e)
    cge = torch.stack(layers).mean(0)
    local, glob, hyper = cge.clone(), torch.zeros_like(cge), {}
    for m in model.modal:
        x = model.features.get(m)
        fi = x @ model.projections[m]
        fu = (r @ fi) / r.sum(1, keepdim=True)
        h = torch.cat([fu, fi])
        for _ in range(p.n_mm_layers):
            h = a @ h
        local = local + h / h.norm(dim=1, keepdim=True)
        hi = torch.softmax(x @ model.hyperedges[m] / p.tau, dim=1)
        hu = torch.softmax(r @ x @ model.hyperedges[m] / p.tau, dim=1)
        # L rounds of item -> hyperedge -> item; users read the last round's hyperedges
        ei = cge[nu:]
        for _ in range(p.n_hyper_layers):
            lat = hi.T @ ei
            ei, eu = hi @ lat, hu @ lat
        hyper[m] = (eu, ei)
        glob = glob + torch.cat([eu, ei])
    final = local + p.alpha * glob / glob.norm(dim=1, keepdim=True)
    return final, hyper


def test_forward_matches_a_dense_computation_of_the_equations():
    model = C.build(NAME, eval_gumbel_noise=False, n_hyper_layers=2, n_mm_layers=3, alpha=0.7).eval()
    with torch.no_grad():
        users, items, hyper = model.propagate()
        final, d_hyper = _dense_forward(model)
    torch.testing.assert_close(torch.cat([users, items]), final, atol=1e-5, rtol=1e-4)
    for m in ("image", "text"):
        torch.testing.assert_close(hyper[m][0], d_hyper[m][0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(hyper[m][1], d_hyper[m][1], atol=1e-5, rtol=1e-4)


def test_gumbel_softmax_is_torchs_with_the_same_noise():
    model = C.build(NAME, tau=0.3).train()
    logits = torch.randn(C.N_ITEMS, 4)
    torch.manual_seed(7)
    ours = model.gumbel_softmax(logits)
    torch.manual_seed(7)
    ref = F.gumbel_softmax(logits, tau=0.3, hard=False, dim=1)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ours.sum(1), torch.ones(C.N_ITEMS))


def test_loss_is_bpr_plus_contrastive_plus_unsquared_l2():
    model = C.build(NAME, eval_gumbel_noise=False, cl_weight=0.05, reg_weight=0.1, tau=0.5).eval()
    b = C.make_batch(size=16)
    nu = model.n_users
    with torch.no_grad():
        final, hyper = _dense_forward(model)
        u, pos, neg = final[b.users], final[nu + b.pos_items], final[nu + b.neg_items]
        bpr = -torch.log(torch.sigmoid((u * pos).sum(1) - (u * neg).sum(1))).mean()
        reg = (u.norm() + pos.norm() + neg.norm()) / len(b.users)

        def hcl(e1, e2, everything, t):
            e1, e2, everything = (z / z.norm(dim=1, keepdim=True) for z in (e1, e2, everything))
            return -torch.log(torch.exp((e1 * e2).sum(1) / t) / torch.exp(e1 @ everything.T / t).sum(1)).sum()

        (uv, iv), (ut, it) = hyper["image"], hyper["text"]
        cl = hcl(uv[b.users], ut[b.users], ut, 0.5) + hcl(iv[b.pos_items], it[b.pos_items], it, 0.5)
        got = model.calculate_loss(b)
    torch.testing.assert_close(got, bpr + 0.05 * cl + 0.1 * reg, atol=1e-5, rtol=1e-5)


def test_training_drops_dependencies_at_the_keep_rate():
    model = C.build(NAME, keep_rate=0.5).train()
    h = torch.ones(1000, 4)
    dropped = model.dropout(h)
    share = float((dropped == 0).float().mean())
    assert 0.45 < share < 0.55 and torch.allclose(dropped[dropped != 0], torch.tensor(2.0))
    assert torch.equal(model.eval().dropout(h), h)


def test_single_modality_has_no_contrastive_term():
    x = np.random.default_rng(0).standard_normal((C.N_ITEMS, 9)).astype(np.float32)
    model = C.build(NAME, features=ItemFeatures(image=x), eval_gumbel_noise=False, cl_weight=10.0).eval()
    b = C.make_batch(size=16)
    with torch.no_grad():
        users, items, _ = model.propagate()
        u, pos, neg = users[b.users], items[b.pos_items], items[b.neg_items]
        expected = -F.logsigmoid((u * pos).sum(1) - (u * neg).sum(1)).mean() + 1e-6 * (
            u.norm() + pos.norm() + neg.norm()) / 16
        torch.testing.assert_close(model.calculate_loss(b), expected)


def test_export_embeddings_reproduce_full_ranking():
    model = C.build(NAME).eval()
    users = torch.arange(C.N_USERS)
    with torch.no_grad():
        u, i = model.export_embeddings()
        torch.testing.assert_close(model.full_sort_predict(users), u[users] @ i.T)


def test_params_are_validated():
    import pydantic
    import pytest

    from cliper.models.lgmrec import LGMRecParams

    for bad in ({"keep_rate": 0.0}, {"keep_rate": 1.5}, {"hyper_num": 0}, {"n_hyper_layers": 0}, {"tau": 0.0},
                {"embedding_dim": 0}, {"alpha": -0.1}, {"feat_embed_dim": 64}):
        with pytest.raises(pydantic.ValidationError):
            LGMRecParams(**bad)


def test_evaluation_noise_depends_on_the_weights_only():
    """With the authors' eval-time Gumbel noise, two passes over the same weights rank alike,
    whatever the torch RNG did in between (evaluate and serving reproduce the run)."""
    model = C.build(NAME)
    C.train_steps(model, 1)
    model.eval()
    with torch.no_grad():
        first = model.full_sort_predict(torch.arange(C.N_USERS))
        torch.manual_seed(999)
        torch.rand(1000)
        model.eval()  # a new pass: the cache is cleared
        second = model.full_sort_predict(torch.arange(C.N_USERS))
        noiseless = C.build(NAME, eval_gumbel_noise=False)
        noiseless.load_state_dict(model.state_dict())
        plain = noiseless.eval().full_sort_predict(torch.arange(C.N_USERS))
    assert torch.equal(first, second)
    assert not torch.allclose(first, plain)  # the noise is really drawn
