"""SLMRec on a tiny graph: contract checks for every self-supervised task."""

from __future__ import annotations

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
