import pytest
import torch

from cliper.errors import ConfigError
from cliper.testing.backbones import (
    build,
    check_ranking_follows_the_trained_model,
    check_features_matter,
    check_scores_shape,
    check_seeded_runs_identical,
    check_single_modality,
    check_step_lowers_loss,
    make_batch,
)

NAME = "vbpr"


def test_step_lowers_loss():
    check_step_lowers_loss(NAME)


def test_scores_shape():
    check_scores_shape(NAME)


def test_seeded_runs_identical():
    check_seeded_runs_identical(NAME)


def test_ranking_follows_the_trained_model():
    check_ranking_follows_the_trained_model(NAME)


def test_features_change_scores():
    check_features_matter(NAME)


def test_single_modality():
    check_single_modality(NAME)


def test_concatenates_text_and_image_before_projection():
    model = build(NAME, embedding_dim=8)
    feats = model.features
    assert model.projection.in_features == feats.dim("text") + feats.dim("image")
    expected = torch.cat([feats.get("text"), feats.get("image")], 1)
    assert torch.equal(model.content(), expected)
    items = torch.tensor([3, 0, 3])
    assert torch.equal(model.content(items), expected[items])
    with torch.no_grad():  # the per-modality projection equals projecting the concatenation
        assert torch.allclose(model.project(), model.projection(expected), atol=1e-5)
        assert torch.allclose(model.item_vectors(items), model.item_vectors()[items], atol=1e-6)


def test_score_is_id_part_plus_visual_part():
    """VBPR Eq. 2 without biases: gamma_u.gamma_i + theta_u.(E f_i)."""
    model = build(NAME, embedding_dim=8).eval()
    u = torch.tensor([2, 9])
    with torch.no_grad():
        gamma_u, theta_u = model.user_embedding(u)[:, :8], model.user_embedding(u)[:, 8:]
        expected = gamma_u @ model.item_embedding.weight.T + theta_u @ model.projection(model.content()).T
        assert torch.allclose(model.full_sort_predict(u), expected, atol=1e-5)


def test_batch_loss_matches_full_item_vectors():
    """Projecting only the batch rows gives the loss of projecting every item."""
    model = build(NAME).train()
    b = make_batch()
    with torch.no_grad():
        full = model.item_vectors()
        u = model.user_embedding(b.users)
        p, n = full[b.pos_items], full[b.neg_items]
        expected = -torch.nn.functional.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
        reg = (u.norm() + p.norm() + n.norm()) / len(u)  # reg_form norm (MMRec EmbLoss)
        expected = expected + model.params.reg_weight * reg
        assert torch.allclose(model.calculate_loss(b), expected, atol=1e-6)


def test_needs_features():
    from cliper.models import ModelContext, get_model_class
    from cliper.testing import tiny_dataset

    cls = get_model_class(NAME)
    with pytest.raises(ConfigError, match="needs item features"):
        cls(ModelContext(train=tiny_dataset().train_view(), features=None), cls.Params())
