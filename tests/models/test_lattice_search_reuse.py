"""LATTICE reuses the evaluation pass's kNN search in the next epoch's first batch only when the
projected features are bitwise the same; the edge values keep their gradients either way."""

from __future__ import annotations

import pytest
import torch

import cliper.models.lattice as L
import cliper.testing.backbones as C

NAME = "lattice"


@pytest.fixture
def searches(monkeypatch):
    calls = []

    def counting(z, *args, **kwargs):
        calls.append(z.shape[0])
        return topk(z, *args, **kwargs)

    topk = L.topk_cosine
    monkeypatch.setattr(L, "topk_cosine", counting)
    return calls


def _eval_pass(model):
    model.train()  # a fresh pass: train() / eval() drop the cached scores
    model.eval()
    with torch.no_grad():
        model.score_embeddings()


def _first_batch_loss(model, seed=0):
    model.train()
    model.pre_epoch_hook(1)
    return model.calculate_loss(C.make_batch(seed))


@pytest.mark.parametrize("train_features", [True, False])  # F.linear / oneDNN projection
def test_first_batch_reuses_the_evaluation_search(searches, train_features):
    model = C.build(NAME, train_features=train_features)
    _eval_pass(model)
    assert len(searches) == 2 and model.search_reuses == 0  # one search per modality
    loss = _first_batch_loss(model)
    assert len(searches) == 2 and model.search_reuses == 2  # same weights: no new search
    loss.backward()  # the reused neighbours' edge values still carry gradients
    assert model.modal_weight.grad is not None and model.modal_weight.grad.abs().sum() > 0
    assert all(p.weight.grad.abs().sum() > 0 for p in model.projections.values())


def test_reused_search_gives_the_graph_of_a_fresh_search():
    model = C.build(NAME)
    _eval_pass(model)
    reused = _first_batch_loss(model)
    fresh_model = C.build(NAME)  # same seed, same weights, nothing to reuse
    fresh = _first_batch_loss(fresh_model)
    assert fresh_model.search_reuses == 0 and model.search_reuses == 2
    assert torch.equal(reused, fresh)


def test_optimiser_step_forces_a_fresh_search(searches):
    model = C.build(NAME)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _eval_pass(model)
    _first_batch_loss(model).backward()  # reuses the pass's search
    opt.step()
    _first_batch_loss(model, seed=1)  # the next epoch's rebuild with other weights: searches
    assert len(searches) == 4 and model.search_reuses == 2


@pytest.mark.parametrize("edit", ["data", "residual", "load_state_dict"])
def test_any_change_of_the_projected_features_forces_a_fresh_search(searches, edit):
    model = C.build(NAME)
    _eval_pass(model)
    if edit == "data":  # .data edits bump no version counter; the projection still differs
        model.projections["image"].weight.data[0, 0] += 0.5
    elif edit == "residual":
        with torch.no_grad():
            model.residuals["text"][3] += 1.0
    else:
        other = C.build(NAME, seed=7)
        model.load_state_dict(other.state_dict())
    _first_batch_loss(model)
    changed = {"data": 1, "residual": 1, "load_state_dict": 2}[edit]
    assert len(searches) == 2 + changed and model.search_reuses == 2 - changed


def test_evaluation_passes_always_search(searches):
    """A pass costs what it costs after a training epoch: two passes with the same weights both search."""
    model = C.build(NAME)
    _eval_pass(model)
    _eval_pass(model)
    assert len(searches) == 4 and model.search_reuses == 0


def test_the_trainer_loop_reuses_each_evaluation_search(searches):
    """In Trainer.fit the valid pass and the next epoch's first batch see the same weights."""
    from cliper.config import load_config
    from cliper.evaluation.evaluator import Evaluator
    from cliper.training.trainer import Trainer

    model = C.build(NAME)
    d = C.data()
    cfg = load_config(overrides=["model.name=lattice", "train.epochs=3", "train.batch_size=64",
                                 "train.patience=50", "train.checkpoint=false"])
    ev = Evaluator(d, topk=(10,), metrics=("recall",), batch_size=16)
    Trainer(model, d, ev, cfg.train, "recall@10", cfg.seed, None, progress=False).fit()
    # epochs 2 and 3 reuse the search of the pass before them; epoch 1 and the 3 passes search
    assert model.search_reuses == 2 * 2 and len(searches) == 2 * (1 + 3)
