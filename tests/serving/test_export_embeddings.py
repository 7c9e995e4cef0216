"""The serving contract: every backbone's scores are the dot product of its exported embeddings."""

import pytest
import torch

from cliper.models.registry import BUILTIN, get_model_class
from cliper.testing import backbones as C

BACKBONES = sorted(BUILTIN)  # every backbone that ships


@pytest.mark.parametrize("name", BACKBONES)
def test_export_embeddings_reproduce_full_sort_predict(name, tmp_path):
    model = C.build(name, cache_dir=tmp_path)
    scores = C.train_steps(model, 2)  # trained a little, so embeddings are not the initialisation
    users, items = model.export_embeddings()
    assert users.shape[0] == C.N_USERS and items.shape[0] == C.N_ITEMS and users.shape[1] == items.shape[1]
    assert users.dtype == torch.float32 and not users.requires_grad
    diff = (users @ items.T - scores).abs().max().item()
    assert diff <= 1e-5, diff
    # the exported matrices are detached copies: changing them leaves the model alone
    users.zero_()
    with torch.no_grad():
        assert torch.allclose(model.full_sort_predict(torch.arange(C.N_USERS)), scores, atol=1e-6)


def test_export_embeddings_after_training_mode_recomputes(tmp_path):
    """A model left in train mode still exports its eval-mode representations (dropout off)."""
    model = C.build("bm3", cache_dir=tmp_path)
    C.train_steps(model, 1)
    model.train()
    users, items = model.export_embeddings()
    with torch.no_grad():
        assert torch.allclose(users @ items.T, model.full_sort_predict(torch.arange(C.N_USERS)), atol=1e-5)


def test_every_registered_builtin_exports():
    for name in BACKBONES:
        assert "score_embeddings" in vars(get_model_class(name)), name
