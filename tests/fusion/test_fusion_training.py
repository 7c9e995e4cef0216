"""Trainable fusions (MLP, learnable attention) learn inside a recommender (cliper-method.md s.2, s.6)."""

import pytest
import torch

from cliper.testing import tiny_features
from cliper.testing.backbones import build, check_trainable_fusion_learns, make_batch


@pytest.mark.parametrize("fusion", ["mlp", "attention"])
@pytest.mark.parametrize("model", ["vbpr", "mmgcn", "grcn", "dualgnn", "lattice", "slmrec", "bm3", "freedom", "mgcn",
                                   "lgmrec", "dragon", "smore"])  # every backbone reading features (docs/fusion.md)
def test_fusion_weights_get_gradients_and_fused_text_changes(model, fusion):
    check_trainable_fusion_learns(model, fusion, steps=3)


def test_parameter_free_fusion_has_nothing_to_train_but_still_feeds_the_model():
    feats = tiny_features(30, 16, 12, seed=0, views=4, fusion="sa")
    model = build("vbpr", features=feats)
    assert list(feats.fusion.parameters()) == []
    model.calculate_loss(make_batch()).backward()
    before = feats.get("text").clone()
    torch.optim.Adam(model.parameters(), lr=1e-2).step()
    assert torch.equal(before, feats.get("text"))


def test_fusion_moves_with_the_model_state_dict():
    feats = tiny_features(30, 16, 12, seed=0, views=4, fusion="mlp")
    model = build("vbpr", features=feats)
    keys = [k for k in model.state_dict() if k.startswith("features.fusion.")]
    assert keys, "fusion weights must be saved with the model"
