"""The contract kit's ranking check fails on models that break what it checks (it can fail)."""

from __future__ import annotations

import pytest
import torch

import cliper.testing.backbones as C


def _bpr():
    model = C.build("bpr")
    C.train_steps(model, 1)
    return model


def test_passes_on_a_correct_model():
    C._check_lists_rank_by_scores(_bpr(), C.data())


def test_fails_when_scores_depend_on_the_chunk():
    model = _bpr()
    plain = model.full_sort_predict

    def per_chunk(users):  # item order flips with the chunk size: lists no longer follow one full pass
        s = plain(users)
        return -s if users.numel() < C.N_USERS else s

    model.full_sort_predict = per_chunk
    with pytest.raises(AssertionError):
        C._check_lists_rank_by_scores(model, C.data())


def test_fails_on_a_stale_evaluation_cache(monkeypatch):
    model = C.build("lightgcn")
    # break the contract: a cache that never forgets its first value, whatever the weights do
    monkeypatch.setattr(type(model), "train", lambda self, mode=True: torch.nn.Module.train(self, mode))
    memo: dict = {}
    monkeypatch.setattr(type(model), "cached",
                        lambda self, compute: compute() if self.training else memo.setdefault(id(self), compute()))
    with pytest.raises(AssertionError, match="stale"):
        C.check_model_ranking(model)


def test_fails_when_export_embeddings_disagree_with_full_ranking(monkeypatch):
    model = C.build("bpr")
    # scores no longer the exported pair's dot product (full_sort_predict defaults to it, so override it)
    monkeypatch.setattr(type(model), "full_sort_predict",
                        lambda self, users: self.user_embedding(users) @ (self.item_embedding.weight * 2).T)
    with pytest.raises(AssertionError):
        C.check_model_ranking(model)
