"""The shared L2 penalty (``model.reg_form``): both forms by hand, and every model honours the key."""

import math

import pytest
import torch

from cliper.models import get_model_class
from cliper.models.layers import l2_penalty
from cliper.testing import backbones as C

U = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # ||U||_F = 5, ||U||^2 = 25
P = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # ||P||_F = sqrt(5), ||P||^2 = 5


def test_squared_form_by_hand():
    # (25 + 5) / (2 * 2 rows)
    assert l2_penalty("squared", U, P).item() == pytest.approx(7.5)


def test_norm_form_is_unsquared_frobenius_over_batch():
    # MMRec EmbLoss: (5 + sqrt 5) / 2 rows
    assert l2_penalty("norm", U, P).item() == pytest.approx((5 + math.sqrt(5)) / 2)


def test_mean_form_by_hand():
    # mean(U^2) = 25/4, mean(P^2) = 5/4
    assert l2_penalty("mean", U, P).item() == pytest.approx(7.5)


def test_divisor_is_the_last_tensors_rows():
    # EmbLoss divides by embeddings[-1].shape[0]: BM3 passes (all users, all items) -> / n_items
    items = torch.ones(4, 2)  # ||.||_F = sqrt 8
    assert l2_penalty("norm", U, items).item() == pytest.approx((5 + math.sqrt(8)) / 4)


def test_unknown_form_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown reg_form 'l1'"):
        l2_penalty("l1", U)


def test_params_reject_an_unknown_form():
    with pytest.raises(Exception, match="reg_form"):
        get_model_class("bpr").Params(reg_form="l1")


REFERENCE_FORMS = {
    "bpr": "norm", "vbpr": "norm", "lightgcn": "norm", "bm3": "norm", "lgmrec": "norm",
    "lattice": "squared", "mgcn": "squared", "smore": "squared", "slmrec": "squared",
    "mmgcn": "mean", "grcn": "mean", "dualgnn": "mean", "dragon": "mean", "freedom": "none",
}


@pytest.mark.parametrize("name", sorted(REFERENCE_FORMS))
def test_params_and_yaml_default_to_the_reference_form(name):
    from cliper.config.loader import _model_layer  # noqa: PLC0415

    assert get_model_class(name).Params().reg_form == REFERENCE_FORMS[name]
    assert _model_layer(name)["model"].get("reg_form", "none") == REFERENCE_FORMS[name]


@pytest.mark.parametrize("form", ["squared", "norm"])
def test_bpr_loss_uses_the_chosen_form(form):
    model = C.build("bpr", reg_weight=0.5, reg_form=form)
    b = C.make_batch()
    u = model.user_embedding.weight[b.users].detach()
    p, n = model.item_embedding.weight[b.pos_items].detach(), model.item_embedding.weight[b.neg_items].detach()
    bpr = -torch.log(torch.sigmoid((u * p).sum(1) - (u * n).sum(1))).mean()
    if form == "squared":
        reg = (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (2 * len(u))
    else:
        reg = (u.pow(2).sum().sqrt() + p.pow(2).sum().sqrt() + n.pow(2).sum().sqrt()) / len(u)
    assert C.loss_at(model, b) == pytest.approx((bpr + 0.5 * reg).item(), rel=1e-5)


@pytest.mark.parametrize("name", ["vbpr", "lightgcn", "lattice", "bm3", "mmgcn", "lgmrec"])
def test_every_model_honours_the_form(name):
    """Same weights, same batch, only reg_form differs: the loss changes."""
    b = C.make_batch()
    losses = []
    for form in ("squared", "norm"):
        model = C.build(name, reg_weight=0.5, reg_form=form)
        model.train()
        model.pre_epoch_hook(1)
        losses.append(C.loss_at(model, b))
    assert abs(losses[0] - losses[1]) > 1e-4


def test_freedom_has_no_l2_form():
    with pytest.raises(Exception, match="reg_form"):
        get_model_class("freedom").Params(reg_form="norm")
