"""SMORE on a tiny graph: contract checks + its parts against small dense computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

import cliper.testing.backbones as C
from cliper.models.smore import info_nce, max_union, spectral_filter, spectral_fusion
from cliper.testing import tiny_features

NAME = "smore"
SMALL = {"image_knn_k": 5, "text_knn_k": 4}


# -- small dense references (numpy, independent of cliper.graphs and torch.fft) ---------
def dense_knn_weighted(x: np.ndarray, k: int) -> np.ndarray:
    """Cosine top-k (self included) keeping the similarities, then D^-1/2 S D^-1/2 with D the row sums."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ xn.T
    a = np.zeros_like(sim)
    for i in range(len(x)):
        top = np.argsort(-sim[i], kind="stable")[:k]
        a[i, top] = sim[i, top]
    d = a.sum(1) ** -0.5
    return d[:, None] * a * d[None, :]


def dense_bipartite(r: np.ndarray) -> np.ndarray:
    u, i = r.shape
    a = np.zeros((u + i, u + i))
    a[:u, u:], a[u:, :u] = r, r.T
    deg = a.sum(1)
    d = np.where(deg > 0, deg, 1.0) ** -0.5 * (deg > 0)
    return d[:, None] * a * d[None, :]


def dft_filter(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Real signal x [n] (n even), half-spectrum filter w [n/2 + 1] complex: the explicit orthonormal DFT,
    the filtered half spectrum extended Hermitian (imaginary parts of bins 0 and n/2 dropped), inverse DFT."""
    n = len(x)
    j = np.arange(n)
    half = np.arange(n // 2 + 1)
    spec = (np.exp(-2j * np.pi * np.outer(half, j) / n) @ x) / np.sqrt(n)
    z = spec * w
    z[0], z[-1] = z[0].real, z[-1].real
    full = np.concatenate([z, np.conj(z[1:-1][::-1])])
    return ((np.exp(2j * np.pi * np.outer(j, np.arange(n)) / n) @ full) / np.sqrt(n)).real


def train_dense() -> np.ndarray:
    return C.data().train_matrix.toarray().astype(np.float64)


# -- contract -------------------------------------------------------------------------------
def test_one_step_lowers_loss():
    C.check_step_lowers_loss(NAME)
    C.check_step_lowers_loss(NAME, dropout=0.0, **SMALL)


def test_scores_shape():
    C.check_scores_shape(NAME)
    C.check_scores_shape(NAME, n_ui_layers=1, n_layers=2, **SMALL)


def test_seeded_runs_identical():
    C.check_seeded_runs_identical(NAME, **SMALL)


def test_evaluator_masks_train_items():
    C.check_evaluator_masks_train_items(NAME)


def test_eval_propagates_once_per_pass():
    C.check_eval_computes_once_per_pass(NAME, "propagate", **SMALL)


def test_features_change_scores():
    C.check_features_matter(NAME, **SMALL)


def test_single_modality():
    C.check_single_modality(NAME, **SMALL)


def test_trainable_fusion_gets_gradients():
    C.check_trainable_fusion_learns(NAME, "mlp", **SMALL)


def test_trained_feature_residuals_get_gradients():
    model = C.build(NAME, train_features=True, **SMALL)
    model.train()
    model.calculate_loss(C.make_batch()).backward()
    assert all(r.grad is not None and r.grad.abs().sum() > 0 for r in model.residuals.values())


def test_changing_features_changes_the_cached_graph(tmp_path):
    first, again, other = C.check_graph_cache_follows_features(NAME, tmp_path, **SMALL)
    for v in ("image", "text", "fusion"):
        a = first.item_graphs[v].matrix.to_dense()
        assert torch.equal(a, again.item_graphs[v].matrix.to_dense())
        assert not torch.equal(a, other.item_graphs[v].matrix.to_dense())


def test_params_are_validated():
    import pydantic

    for bad in ({"embedding_dim": 0}, {"image_knn_k": 0}, {"temperature": 0.0}, {"dropout": 1.0},
                {"cl_weight": -1.0}, {"no_such_key": 1}):
        with pytest.raises(pydantic.ValidationError):
            C.build(NAME, **bad)


# -- spectrum (Spectrum Modality Fusion) ------------------------------------------------------
@pytest.mark.parametrize("n", [8, 64])
def test_spectral_filter_is_the_explicit_dft_filter(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((3, n))
    w = rng.standard_normal((n // 2 + 1, 2))
    got = spectral_filter(torch.tensor(x, dtype=torch.float32), torch.tensor(w, dtype=torch.float32)).numpy()
    ref = np.stack([dft_filter(row, w[:, 0] + 1j * w[:, 1]) for row in x])
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_spectral_fusion_with_a_unit_filter_is_circular_convolution():
    """Element-wise product in the (orthonormal) spectrum = circular convolution / sqrt(n) in the feature domain."""
    n = 16
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, n)), rng.standard_normal((2, n))
    ones = torch.zeros(n // 2 + 1, 2)
    ones[:, 0] = 1.0
    got = spectral_fusion(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32), ones).numpy()
    conv = np.array([[sum(a[r, m] * b[r, (j - m) % n] for m in range(n)) for j in range(n)] for r in range(2)])
    np.testing.assert_allclose(got, conv / np.sqrt(n), atol=1e-4)


def test_unit_filter_is_the_identity():
    x = torch.randn(4, 10)
    w = torch.zeros(6, 2)
    w[:, 0] = 1.0
    torch.testing.assert_close(spectral_filter(x, w), x, atol=1e-5, rtol=1e-5)


# -- graphs (Multi-modal Graph Learning) ------------------------------------------------------
def test_item_graphs_are_weighted_knn_graphs_and_their_elementwise_max():
    feats = tiny_features(C.N_ITEMS, 16, 12, seed=0)
    model = C.build(NAME, features=feats, **SMALL)
    img = dense_knn_weighted(feats.get("image").numpy(), 5)
    txt = dense_knn_weighted(feats.get("text").numpy(), 4)
    g = {v: model.item_graphs[v].matrix.to_dense().numpy() for v in ("image", "text", "fusion")}
    np.testing.assert_allclose(g["image"], img, atol=1e-6)
    np.testing.assert_allclose(g["text"], txt, atol=1e-6)
    both = np.maximum(np.where(img != 0, img, -np.inf), np.where(txt != 0, txt, -np.inf))
    np.testing.assert_allclose(g["fusion"], np.where(np.isfinite(both), both, 0.0), atol=1e-6)


def test_max_union_keeps_entries_stored_in_one_matrix_even_when_negative():
    a = sp.csr_matrix(np.array([[0.5, -0.2, 0.0], [0.0, 0.0, 0.3]], dtype=np.float32))
    b = sp.csr_matrix(np.array([[0.1, 0.0, -0.4], [0.0, 0.0, 0.7]], dtype=np.float32))
    np.testing.assert_allclose(max_union(a, b).toarray(), [[0.5, -0.2, -0.4], [0.0, 0.0, 0.7]])


def test_user_view_block_is_the_normalised_interaction_matrix():
    model = C.build(NAME, **SMALL)
    r = train_dense()
    du, di = r.sum(1), r.sum(0)
    ref = r / np.sqrt(np.outer(np.where(du > 0, du, 1), np.where(di > 0, di, 1)))
    np.testing.assert_allclose(model.user_item.matrix.to_dense().numpy(), ref, atol=1e-6)


# -- the whole forward pass + loss -----------------------------------------------------------
def dense_forward(model, a: torch.Tensor):
    """SMORE's propagation written out with dense matrices (eval mode: no dropout)."""
    n_u, p = C.N_USERS, model.params
    s = {v: model.item_graphs[v].matrix.to_dense() for v in ("image", "text", "fusion")}
    r = a[:n_u, n_u:]
    x = {m: model.features.get(m) @ model.projections[m].weight.T + model.projections[m].bias for m in ("image", "text")}
    w = {v: torch.tensor(model.filters[v].detach().numpy()[:, 0] + 1j * model.filters[v].detach().numpy()[:, 1])
         for v in ("image", "text", "fusion")}
    spec = {m: torch.fft.rfft(x[m].double(), dim=1, norm="ortho") for m in x}
    d = p.embedding_dim
    sig = {
        "image": torch.fft.irfft(spec["image"] * w["image"], n=d, dim=1, norm="ortho").float(),
        "text": torch.fft.irfft(spec["text"] * w["text"], n=d, dim=1, norm="ortho").float(),
        "fusion": torch.fft.irfft(spec["image"] * spec["text"] * w["fusion"], n=d, dim=1, norm="ortho").float(),
    }
    e_i, e_u = model.item_embedding.weight, model.user_embedding.weight
    ego = torch.cat([e_u, e_i])
    layers = [ego]
    for _ in range(p.n_ui_layers):
        layers.append(a @ layers[-1])
    beh = torch.stack(layers).mean(0)
    views = {}
    for v in ("image", "text", "fusion"):
        lin = model.item_gates[v][0]
        h = e_i * torch.sigmoid(sig[v] @ lin.weight.T + lin.bias)
        for _ in range(p.n_layers):
            h = s[v] @ h
        views[v] = torch.cat([r @ h, h])
    parts = []
    for v in ("image", "text", "fusion"):
        g = model.preference_gates[v][0]
        pref = torch.sigmoid(beh @ g.weight.T + g.bias)
        if v == "fusion":
            parts.append(pref * views[v])
        else:
            q = model.queries[v]
            att = torch.softmax(torch.tanh(views["fusion"] @ q[0].weight.T + q[0].bias) @ q[2].weight.T, dim=1)
            parts.append(pref * att * views[v])
    side = (parts[0] + parts[1] + parts[2]) / 3
    final = beh + side
    return final[:n_u], final[n_u:], side, beh


def test_propagation_matches_a_dense_computation():
    model = C.build(NAME, n_ui_layers=3, n_layers=2, **SMALL).eval()
    a = torch.tensor(dense_bipartite(train_dense()), dtype=torch.float32)
    with torch.no_grad():
        ref = dense_forward(model, a)
        got = model.propagate()
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=2e-5, rtol=1e-4)


def test_info_nce_is_the_explicit_ratio():
    rng = np.random.default_rng(0)
    v1, v2 = rng.standard_normal((2, 7, 5))
    n1 = v1 / np.linalg.norm(v1, axis=1, keepdims=True)
    n2 = v2 / np.linalg.norm(v2, axis=1, keepdims=True)
    pos = np.exp((n1 * n2).sum(1) / 0.2)
    ttl = np.exp(n1 @ n2.T / 0.2).sum(1)
    ref = np.mean(-np.log(pos / ttl))
    got = float(info_nce(torch.tensor(v1), torch.tensor(v2), 0.2))
    assert abs(got - ref) < 1e-9


def test_loss_is_bpr_plus_l2_plus_weighted_info_nce():
    model = C.build(NAME, dropout=0.0, reg_weight=0.3, cl_weight=0.7, **SMALL)
    model.train()
    b = C.make_batch()
    a = torch.tensor(dense_bipartite(train_dense()), dtype=torch.float32)
    with torch.no_grad():
        users, items, side, beh = dense_forward(model, a)
        u, p, n = users[b.users], items[b.pos_items], items[b.neg_items]
        bpr = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
        l2 = ((u ** 2).sum() + (p ** 2).sum() + (n ** 2).sum()) / (2 * len(b.users))

        def nce(x, y):
            x, y = x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
            return (-torch.log(torch.exp((x * y).sum(1) / 0.2) / torch.exp(x @ y.T / 0.2).sum(1))).mean()

        n_u = C.N_USERS
        cl = nce(side[n_u + b.pos_items], beh[n_u + b.pos_items]) + nce(side[b.users], beh[b.users])
        torch.testing.assert_close(model.calculate_loss(b), bpr + 0.3 * l2 + 0.7 * cl, atol=1e-4, rtol=1e-4)


def test_dropout_acts_on_the_preference_gates_in_training_only():
    model = C.build(NAME, dropout=0.5, **SMALL)
    model.train()
    torch.manual_seed(0)
    a = model.propagate()[0]
    torch.manual_seed(1)
    b = model.propagate()[0]
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        c = model.propagate()[0]
        torch.manual_seed(1)
        d = model.propagate()[0]
    torch.testing.assert_close(c, d)


def test_export_embeddings_give_the_full_ranking_scores():
    model = C.build(NAME, **SMALL).eval()
    with torch.no_grad():
        users, items = model.export_embeddings()
        idx = torch.tensor([0, 4, 9, 39])
        torch.testing.assert_close(model.full_sort_predict(idx), users[idx] @ items.T)


def test_single_modality_has_no_fusion_view():
    from cliper.features.item_features import ItemFeatures

    x = np.random.default_rng(0).standard_normal((C.N_ITEMS, 9)).astype(np.float32)
    model = C.build(NAME, features=ItemFeatures(image=x), **SMALL)
    assert model.views == ["image"] and set(model.item_graphs) == {"image"}
    assert "fusion" not in model.filters
