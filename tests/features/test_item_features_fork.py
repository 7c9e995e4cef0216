"""A grid or seed sweep forks the shared features: one copy of the arrays, one fusion per point."""

import numpy as np
import torch

from cliper.features.item_features import ItemFeatures
from cliper.fusion import build_fusion


def _features():
    rng = np.random.default_rng(0)
    views = rng.standard_normal((3, 20, 8)).astype(np.float32)
    image = rng.standard_normal((20, 16)).astype(np.float32)
    return ItemFeatures(image=image, views=views, similarity=rng.random((20, 3)).astype(np.float32),
                        fusion=build_fusion("mlp", 3, 8))


def test_fork_shares_the_arrays_and_owns_its_fusion():
    base = _features()
    a, b = base.fork(), base.fork()
    for name in ("_image", "_views", "_similarity"):
        assert getattr(a, name).data_ptr() == getattr(base, name).data_ptr() == getattr(b, name).data_ptr()
    pa, pb = list(a.fusion.parameters()), list(b.fusion.parameters())
    assert pa and all(x.data_ptr() != y.data_ptr() for x, y in zip(pa, pb))
    with torch.no_grad():  # training one point's fusion leaves the others' untouched
        for p in pa:
            p.add_(1.0)
    assert all(torch.equal(x, y) for x, y in zip(base.fusion.parameters(), pb))
    assert not torch.equal(a.get("text"), b.get("text"))
    assert torch.equal(a.get("image"), b.get("image"))
