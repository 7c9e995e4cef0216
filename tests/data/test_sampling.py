import numpy as np

from cliper.data.sampling import NegativeSampler
from cliper.testing import tiny_dataset


def test_negatives_are_never_train_items_and_cover_items():
    data = tiny_dataset(n_users=50, n_items=12, per_user=9, seed=3)  # 7 train items of 12: dense
    sampler = NegativeSampler(data.train_matrix)
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(50), 200)
    neg = sampler.sample(users, rng)
    train = data.train_matrix
    assert not train[users, neg].any()
    assert set(np.unique(neg)) == set(range(12))


def test_sampling_is_seeded():
    data = tiny_dataset()
    s = NegativeSampler(data.train_matrix)
    users = np.arange(40).repeat(3)
    a = s.sample(users, np.random.default_rng(5))
    b = s.sample(users, np.random.default_rng(5))
    assert (a == b).all()
