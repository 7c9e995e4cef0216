"""Every kNN backbone searches its item graphs with the run's ``graph`` settings (``ctx.knn``), both
for the cached feature graphs and for a trainable fusion's refreshed text graph: before this, MGCN,
SMORE and DRAGON silently used the default backend whatever ``graph.knn_backend`` said."""

import pytest

import cliper.testing.backbones as C
from cliper.graphs.knn_search import KnnSearch
from cliper.models.base import ModelContext
from cliper.models.registry import get_model_class
from cliper.testing import tiny_features


@pytest.mark.parametrize("name", ["freedom", "lattice", "mgcn", "smore", "dragon"])
def test_item_graphs_use_the_configured_search(name, tmp_path):
    search = KnnSearch(backend="torch", recall_sample=7)  # not the default: the cache key names it
    cls = get_model_class(name)
    ctx = ModelContext(train=C.data().train_view(), features=tiny_features(C.N_ITEMS, 16, 12, seed=0),
                       cache_dir=tmp_path, knn=search)
    model = cls(ctx, cls.Params())
    assert model.knn_cache.search is search
    assert model.fused_graphs.search is search
