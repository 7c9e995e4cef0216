"""BM3 on a tiny graph: contract checks; no negatives are used."""

from __future__ import annotations

import torch

import cliper.testing.backbones as C
from cliper.models import Batch

NAME = "bm3"


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


def test_trainable_fusion_gets_gradients():
    C.check_trainable_fusion_learns(NAME, "mlp")


def test_single_modality():
    C.check_single_modality(NAME, "text")


def test_negatives_are_ignored():
    model = C.build(NAME)
    model.train()
    b = C.make_batch()
    other = Batch(b.users, b.pos_items, torch.roll(b.neg_items, 5))
    assert C.loss_at(model, b) == C.loss_at(model, other)


def test_target_dropout_changes_the_loss_between_draws():
    model = C.build(NAME, dropout=0.5)
    model.train()
    b = C.make_batch()
    assert C.loss_at(model, b, seed=1) != C.loss_at(model, b, seed=2)


def test_trainable_feature_residual_learns():
    model = C.build(NAME, train_features=True)
    C.check_step_lowers_loss(NAME, train_features=True)
    model.train()
    model.calculate_loss(C.make_batch()).backward()
    assert model.residuals["image"].grad.abs().sum() > 0
