"""SLMRec on a tiny graph: contract checks for every self-supervised task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cliper.testing.backbones as C

NAME = "slmrec"
TASKS = ["FAC", "FD", "FM", "FD+FM"]


@pytest.mark.parametrize("task", TASKS)
def test_one_step_lowers_loss(task):
    C.check_step_lowers_loss(NAME, ssl_task=task, ssl_alpha=0.5)


def test_scores_shape():
    C.check_scores_shape(NAME)


@pytest.mark.parametrize("task", ["FAC", "FD+FM"])
def test_seeded_runs_identical(task):
    C.check_seeded_runs_identical(NAME, ssl_task=task)


def test_evaluator_masks_train_items():
    C.check_evaluator_masks_train_items(NAME)


def test_eval_propagates_once_per_pass():
    C.check_eval_computes_once_per_pass(NAME, "compute")


@pytest.mark.parametrize("task", ["FAC", "FM"])
def test_trainable_fusion_gets_gradients(task):
    C.check_trainable_fusion_learns(NAME, "mlp", ssl_task=task)


def test_single_modality_and_mean_fusion():
    C.check_single_modality(NAME, "image")
    C.check_single_modality(NAME, "text", mm_fusion_mode="mean")


def test_ssl_weight_changes_the_loss():
    b = C.make_batch()
    plain = C.build(NAME, ssl_alpha=0.0)
    with_ssl = C.build(NAME, ssl_alpha=1.0)
    plain.train()
    with_ssl.train()
    assert C.loss_at(with_ssl, b) > C.loss_at(plain, b)


def test_batched_branch_propagation_equals_separate_lightgcn():
    model = C.build(NAME, n_layers=2)
    inputs = model._item_inputs()
    u_br, i_br = model._propagate(inputs)
    for j, items in enumerate(inputs):
        ego = torch.cat([model.user_embedding.weight, items], 0)
        out, layer = ego, ego
        for _ in range(2):
            layer = model.graph @ layer
            out = out + layer
        out = out / 3
        assert torch.allclose(u_br[:, j], out[: model.n_users], atol=1e-6)
        assert torch.allclose(i_br[:, j], out[model.n_users :], atol=1e-6)


def _info_nce_np(a: np.ndarray, b: np.ndarray, temp: float) -> float:
    """InfoNCE: mean_i [log sum_j exp(a_i . b_j / t) - a_i . b_i / t]."""
    s = a @ b.T / temp
    top = s.max(1, keepdims=True)
    lse = np.log(np.exp(s - top).sum(1)) + top[:, 0]
    return float(np.mean(lse - np.diag(s)))


def _lin(layer, x: np.ndarray) -> np.ndarray:
    return x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_info_nce_and_fac_match_dense_formulas(alpha):
    """Main in-batch InfoNCE + alpha x FAC (Sec. III-B3), every step written out in numpy:
    LightGCN per branch (mean of A^l E, A = D^-1/2 [0 R; R^T 0] D^-1/2), concat read-out,
    level 1 aligns ID with image in d, level 2 maps the joint twice (d -> d -> d/2) against text."""
    p = dict(ssl_task="FAC", ssl_alpha=alpha, temp=0.2, ssl_temp=0.5, n_layers=2)
    model = C.build(NAME, **p).train()
    batch = C.make_batch()
    r = C.data().train_matrix.toarray().astype(np.float64)
    n_users, n_items = r.shape
    a = np.block([[np.zeros((n_users, n_users)), r], [r.T, np.zeros((n_items, n_items))]])
    inv = np.where(a.sum(1) > 0, a.sum(1) ** -0.5, 0.0)
    a_hat = inv[:, None] * a * inv[None, :]
    users_e = model.user_embedding.weight.detach().double().numpy()
    item_inputs = [model.item_embedding.weight.detach().double().numpy()]
    for m in ("image", "text"):
        feats = _unit(model.features.get(m).double().numpy())
        item_inputs.append(_lin(model.dense[m], feats))
    branches = []
    for x in item_inputs:
        e = np.concatenate([users_e, x], 0)
        layers = [e, a_hat @ e, a_hat @ (a_hat @ e)]
        branches.append(sum(layers) / 3)
    users = _lin(model.read_user, np.concatenate([b[:n_users] for b in branches], 1))
    items = _lin(model.read_item, np.concatenate([b[n_users:] for b in branches], 1))
    u, i = batch.users.numpy(), batch.pos_items.numpy()
    expected = _info_nce_np(_unit(users[u]), _unit(items[i]), 0.2)
    rows = [b[n_users:][i] for b in branches]  # ID, image, text item outputs of the batch
    j1 = _lin(model.fac_joint[0], rows[0])
    fac = _info_nce_np(j1, _lin(model.fac_modal[0], rows[1]), 0.5)
    j2 = _lin(model.fac_joint[1][1], _lin(model.fac_joint[1][0], j1))
    assert j2.shape[1] == model.params.embedding_dim // 2
    fac += _info_nce_np(j2, _lin(model.fac_modal[1], rows[2]), 0.5)
    expected += alpha * fac
    got = float(model.calculate_loss(batch).detach())
    assert abs(got - expected) < 1e-4 * max(1.0, abs(expected))
