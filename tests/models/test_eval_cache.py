"""The evaluation cache of :meth:`Recommender.cached`: reused across passes only while nothing changed."""

import torch

from cliper.models import Batch, ModelContext, get_model_class
from cliper.testing import tiny_dataset


def _lightgcn(seed=0):
    data = tiny_dataset()
    cls = get_model_class("lightgcn")
    torch.manual_seed(seed)
    return cls(ModelContext(train=data.train_view()), cls.Params()), data


def _fresh_scores(model, users):
    """Scores from a copy whose cache is empty (the plain computation)."""
    twin, _ = _lightgcn(seed=1)
    twin.load_state_dict(model.state_dict())
    return twin.eval().full_sort_predict(users)


def test_cache_follows_optimiser_steps_in_eval_mode():
    model, data = _lightgcn()
    users = torch.arange(4)
    model.eval()
    s1 = model.full_sort_predict(users)
    assert torch.equal(model.full_sort_predict(users), s1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    batch = Batch(torch.from_numpy(data.train.users[:16]), torch.from_numpy(data.train.items[:16]),
                  torch.from_numpy((data.train.items[:16] + 3) % data.n_items))
    model.calculate_loss(batch).backward()
    opt.step()  # still in eval mode: only the tensor versions tell the cache
    s2 = model.full_sort_predict(users)
    assert not torch.allclose(s1, s2)
    assert torch.allclose(s2, _fresh_scores(model, users), atol=1e-6)


def test_cache_follows_load_state_dict():
    model, _ = _lightgcn()
    other, _ = _lightgcn(seed=5)
    users = torch.arange(4)
    model.eval()
    s1 = model.full_sort_predict(users)
    model.load_state_dict(other.state_dict())
    s2 = model.full_sort_predict(users)
    assert not torch.allclose(s1, s2)
    assert torch.allclose(s2, other.eval().full_sort_predict(users), atol=1e-6)
