import math

import numpy as np
import pytest
import torch

from cliper.errors import ConfigError
from cliper.fusion import (
    ConcatFusion,
    LearnableAttentionFusion,
    MLPFusion,
    SimilarityAttentionFusion,
    SumFusion,
    build_fusion,
    fuse_views,
)

V, N, D = 3, 5, 4


def views_and_sim(seed=0):
    g = torch.Generator().manual_seed(seed)
    views = torch.nn.functional.normalize(torch.randn(V, N, D, generator=g), dim=-1)
    sim = torch.rand(N, V, generator=g) * 2 - 1
    return views, sim


@pytest.mark.parametrize(
    "method, width", [("sum", D), ("mean", D), ("concat", V * D), ("mlp", D), ("sa", D), ("attention", D)]
)
def test_shapes(method, width):
    views, sim = views_and_sim()
    f = build_fusion(method, V, D)
    out = f(views, sim)
    assert out.shape == (N, width) == (N, f.out_dim)


def test_sum_and_concat_values():
    views, sim = views_and_sim()
    assert torch.allclose(SumFusion(V, D)(views, sim), views[0] + views[1] + views[2])
    cat = ConcatFusion(V, D)(views, sim)
    assert torch.equal(cat[2], torch.cat([views[0, 2], views[1, 2], views[2, 2]]))


def test_mlp_is_leaky_relu_of_linear_concat():
    views, sim = views_and_sim()
    f = MLPFusion(V, D)
    flat = torch.cat([views[v] for v in range(V)], 1)
    expected = torch.nn.functional.leaky_relu(flat @ f.linear.weight.T + f.linear.bias, 0.01)
    assert torch.allclose(f(views, sim), expected, atol=1e-6)


def test_sa_weights_by_hand_on_two_views():
    image = np.array([1.0, 0.0, 0.0])
    t1 = np.array([0.6, 0.8, 0.0])  # cos 0.6 with the image
    t2 = np.array([0.0, 0.6, 0.8])  # cos 0.0
    cos = [float(t @ image / np.linalg.norm(t) / np.linalg.norm(image)) for t in (t1, t2)]
    tau = 0.2
    e = [math.exp(c / tau) for c in cos]
    expected = [e[0] / sum(e), e[1] / sum(e)]
    views = torch.tensor(np.stack([t1, t2])[:, None, :], dtype=torch.float32)  # [2, 1, 3]
    sim = torch.tensor([cos], dtype=torch.float32)
    f = SimilarityAttentionFusion(2, 3, tau=tau)
    w = f.weights(views, sim)
    assert torch.allclose(w, torch.tensor([expected], dtype=torch.float32), atol=1e-6)
    fused = f(views, sim)[0].numpy()
    assert np.allclose(fused, expected[0] * t1 + expected[1] * t2, atol=1e-6)


def test_small_tau_picks_the_most_similar_view():
    views, sim = views_and_sim(1)
    out = SimilarityAttentionFusion(V, D, tau=1e-4)(views, sim)
    best = sim.argmax(1)
    assert torch.allclose(out, views[best, torch.arange(N)], atol=1e-5)
    # a large tau tends to the mean
    assert torch.allclose(SimilarityAttentionFusion(V, D, tau=1e6)(views, sim), views.mean(0), atol=1e-5)


def test_learnable_attention_with_zero_query_equals_sa():
    views, sim = views_and_sim(2)
    la = LearnableAttentionFusion(V, D, tau=0.1)
    sa = SimilarityAttentionFusion(V, D, tau=0.1)
    assert torch.count_nonzero(la.query) == 0
    assert torch.allclose(la.weights(views, sim), sa.weights(views, sim))
    assert torch.allclose(la(views, sim), sa(views, sim))
    with torch.no_grad():
        la.query.fill_(1.0)
    assert not torch.allclose(la(views, sim), sa(views, sim))


@pytest.mark.parametrize("method", ["sum", "mean", "concat", "sa"])
def test_offline_fuse_views_equals_module(method):
    views, sim = views_and_sim(3)
    offline = fuse_views(views.numpy(), sim.numpy(), method, tau=0.2)
    module = build_fusion(method, V, D, tau=0.2)(views, sim).numpy()
    assert offline.dtype == np.float32 and np.allclose(offline, module, atol=1e-6)


@pytest.mark.parametrize("method", ["mlp", "attention"])
def test_offline_fusion_refuses_trainable_methods(method):
    views, sim = views_and_sim()
    with pytest.raises(ConfigError, match="trained with the recommender"):
        fuse_views(views.numpy(), sim.numpy(), method)


def test_bad_fusion_config():
    with pytest.raises(ConfigError, match="unknown fusion"):
        build_fusion("max", V, D)
    with pytest.raises(ConfigError, match="tau must be positive"):
        SimilarityAttentionFusion(V, D, tau=0.0)
