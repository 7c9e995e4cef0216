import numpy as np
import pytest
import scipy.sparse as sp
import torch

from cliper.models.mmgcn import neighbour_operator
from cliper.testing.backbones import (
    build,
    check_evaluator_masks_train_items,
    check_features_matter,
    check_scores_shape,
    check_seeded_runs_identical,
    check_single_modality,
    check_step_lowers_loss,
    data,
    make_batch,
)

NAME = "mmgcn"


def test_step_lowers_loss():
    check_step_lowers_loss(NAME)


@pytest.mark.parametrize("params", [{}, {"combination": "add", "aggregation": "add", "n_layers": 1}])
def test_scores_shape(params):
    check_scores_shape(NAME, **params)


def test_seeded_runs_identical():
    check_seeded_runs_identical(NAME, n_layers=2)


def test_evaluator_masks_train_items():
    check_evaluator_masks_train_items(NAME)


def test_features_change_scores():
    check_features_matter(NAME)


def test_single_modality():
    check_single_modality(NAME)


def test_mean_aggregation_equals_neighbour_average():
    """Eq. 1 with MMRec's mean aggregation: row u of A x is the mean of u's items' rows."""
    train = data().train_matrix
    g = neighbour_operator(train, "mean")
    n_users, n_items = train.shape
    x = torch.randn(n_users + n_items, 5)
    out = g @ x
    for u in (0, 7, 31):
        items = train.indices[train.indptr[u] : train.indptr[u + 1]]
        assert torch.allclose(out[u], x[n_users + items].mean(0), atol=1e-6)
    users_of_item = sp.csc_matrix(train)
    i = int(np.argmax(np.diff(users_of_item.indptr)))
    us = users_of_item.indices[users_of_item.indptr[i] : users_of_item.indptr[i + 1]]
    assert torch.allclose(out[n_users + i], x[us].mean(0), atol=1e-6)


def test_sparse_gradient_matches_dense():
    """The sparse neighbour operator's backward equals a dense matrix's."""
    train = data().train_matrix
    g = neighbour_operator(train, "mean")
    dense = g.matrix.to_dense()
    x = torch.randn(dense.shape[0], 4, requires_grad=True)
    w = torch.randn(dense.shape[0], 4)
    (g @ x * w).sum().backward()
    expected = dense.T @ w
    assert torch.allclose(x.grad, expected, atol=1e-5)


def test_layers_and_projection_follow_params():
    model = build(NAME, n_layers=2, image_latent_dim=8, text_latent_dim=None, embedding_dim=6)
    image, text = model.gcns["image"], model.gcns["text"]
    assert image.projection.out_features == 8 and image.preference.shape[1] == 8
    assert text.projection is None and text.preference.shape[1] == model.features.dim("text")
    assert len(image.conv) == 2 and image.conv[1].shape == (6, 6)


def test_ids_and_preferences_fixed_by_default_trained_with_train_ids():
    """MMRec never optimises the ID / preference tables; ``train_ids`` makes them parameters."""
    ref = build(NAME, n_layers=1)
    params = {n for n, _ in ref.named_parameters()}
    buffers = {n for n, _ in ref.named_buffers()}
    assert "id_embedding" not in params and {"id_embedding", "gcns.image.preference"} <= buffers
    assert "id_embedding" in ref.state_dict()  # checkpoints still hold the fixed tables
    before = ref.id_embedding.clone()
    opt = torch.optim.Adam(ref.parameters(), lr=0.1)
    ref.calculate_loss(make_batch()).backward()
    opt.step()
    assert torch.equal(ref.id_embedding, before)
    paper = build(NAME, n_layers=1, train_ids=True)
    names = {n for n, _ in paper.named_parameters()}
    assert "id_embedding" in names and "gcns.image.preference" in names and "gcns.text.preference" in names


@pytest.mark.parametrize("coverage", ["image", "all"])
def test_penalty_covers_image_preferences_or_all(coverage):
    """L2 = reg x [batch ID rows + preference tables]: MMRec's covers only the image table."""
    batch = make_batch()
    model = build(NAME, n_layers=1, preference_penalty=coverage, reg_weight=1.0)
    with torch.no_grad():
        base = build(NAME, n_layers=1, preference_penalty=coverage, reg_weight=0.0).calculate_loss(batch)
        got = model.calculate_loss(batch) - base
        ids = model.id_embedding.numpy().astype(np.float64)
        u = ids[batch.users.numpy()]
        pos = ids[model.n_users + batch.pos_items.numpy()]
        neg = ids[model.n_users + batch.neg_items.numpy()]
        expected = (u**2).mean() + 0.5 * ((pos**2).mean() + (neg**2).mean())
        expected += (model.gcns["image"].preference.numpy().astype(np.float64) ** 2).mean()
        if coverage == "all":
            expected += (model.gcns["text"].preference.numpy().astype(np.float64) ** 2).mean()
    assert abs(float(got) - expected) < 1e-5


@pytest.mark.parametrize("combination", ["concat", "add"])
def test_one_layer_matches_equations(combination):
    """Eq. 1, 5, 6 written out densely for one layer."""
    model = build(NAME, n_layers=1, image_latent_dim=8, combination=combination, embedding_dim=6)
    gcn = model.gcns["image"]
    lrelu = torch.nn.functional.leaky_relu
    with torch.no_grad():
        feats = gcn.projection(model.features.get("image"))
        x = torch.nn.functional.normalize(torch.cat([gcn.preference, feats], 0))
        a = neighbour_operator(data().train_matrix, "mean").matrix.to_dense()
        h = lrelu(a @ x @ gcn.conv[0], 0.01)
        x_hat = lrelu(gcn.linear[0](x), 0.01) + model.id_embedding
        if combination == "concat":
            expected = lrelu(gcn.combine[0](torch.cat([h, x_hat], 1)), 0.01)
        else:
            expected = lrelu(gcn.combine[0](h) + x_hat, 0.01)
        n = model.n_users
        got = torch.cat(gcn(model.blocks, model.features.get("image"), model.id_embedding[:n], model.id_embedding[n:]))
    assert torch.allclose(got, expected, atol=1e-5)
