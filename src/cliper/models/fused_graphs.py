"""kNN item graphs that follow a trainable fusion (issue 12: a trained fusion must shape what the model sees).

FREEDOM, LATTICE (initial graph), MGCN, SMORE and DRAGON build a cosine kNN item graph
per modality from the features once, at construction. With ``features.fusion`` =
``mlp`` or ``attention`` the text features are the output of a fusion that is still
being trained, so a graph built once would hold the *untrained* fusion forever (the
released code's flaw). :class:`FusedGraphRefresh` rebuilds the graph of every
modality a trainable fusion produces from its current output, before epoch
``1 + j * every`` (j >= 1; epoch 1 would rebuild the construction-time graph).

- No disk cache: a refreshed graph depends on the fusion's weights, not on the stored
  features, so it is never keyed by (or reused from) the raw feature content.
- The neighbour lists ([N, k] indices and similarities) are persistent buffers: a
  checkpoint carries the graph in use, so a resumed run continues with exactly the
  graph of the uninterrupted one, and ``best.pt`` is evaluated with its own epoch's graph.
- Deterministic: the graph is a function of the fused features (exact torch search by
  default, index-ordered ties), so seeded runs repeat bit for bit.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from cliper.errors import ConfigError
from cliper.graphs.knn import graph_from_neighbours
from cliper.graphs.knn_search import KnnSearch, search_knn


def fused_modalities(features, modalities) -> list[str]:
    """The modalities of ``modalities`` produced by a trainable fusion (text, when the fusion has weights)."""
    if features is None or not getattr(features, "trainable", False):
        return []
    return [m for m in modalities if m == "text"]


def refuse_unreached_fusion(model: str, features, reason: str) -> None:
    """One-line ConfigError: ``model`` with this trainable fusion would report an untrained fusion."""
    method = getattr(features, "fusion_method", None) or "trainable"
    raise ConfigError(f"model {model!r} with features.fusion={method!r}: {reason}")


class FusedGraphRefresh(nn.Module):
    """Neighbour lists of the fusion-produced modalities' kNN graphs, rebuilt from the current fused features.

    Args:
        modalities: the modalities to follow (:func:`fused_modalities`); empty: inactive.
        every: rebuild before every ``every``-th epoch (0: never, the graph stays as built at construction).
        k: neighbours per item.
        weighted: keep the similarities as edge weights (LATTICE, MGCN, SMORE) or use 1 (FREEDOM, DRAGON).
        normalization: ``"sym"`` for D^-1/2 S D^-1/2, or ``"none"``.
        chunk_size: rows per similarity block (None: ~64 MiB blocks).
        search: the neighbour search backend (default: ``auto``).
    """

    def __init__(self, modalities: list[str], every: int, k: int, weighted: bool, normalization: str = "sym",
                 chunk_size: int | None = None, search: KnnSearch | None = None):
        super().__init__()
        self.modalities = list(modalities)
        self.every = int(every)
        self.k = int(k)
        self.weighted = bool(weighted)
        self.normalization = normalization
        self.chunk_size = chunk_size
        self.search = search or KnnSearch()
        self.refreshes = 0  # rebuilds done in this process (the construction-time build not counted)

    def due(self, epoch: int) -> bool:
        """Whether the graphs are rebuilt before ``epoch`` (1-based): epochs 1 + every, 1 + 2 every, ..."""
        return bool(self.modalities) and self.every > 0 and epoch > 1 and (epoch - 1) % self.every == 0

    @torch.no_grad()
    def build(self, modality: str, features: torch.Tensor) -> sp.csr_matrix:
        """Search the neighbours of ``features`` [N, d], keep them as buffers, return the graph."""
        res = search_knn(features.detach(), self.k, True, self.search, self.chunk_size)
        for part, value in (("indices", res.indices), ("values", res.values.float())):
            name = f"{modality}_{part}"
            value = value.to(features.device).contiguous()
            if name in self._buffers:
                self._buffers[name] = value
            else:
                self.register_buffer(name, value)  # persistent: saved with the model's state_dict
        return self.graph(modality)

    def graph(self, modality: str) -> sp.csr_matrix:
        """The graph of the stored neighbour lists (the last build, or the ones a checkpoint restored)."""
        with np.errstate(invalid="ignore", divide="ignore"):  # a row summing to <= 0 becomes a zero row
            return graph_from_neighbours(self._buffers[f"{modality}_values"], self._buffers[f"{modality}_indices"],
                                         self.weighted, self.normalization)

    def extra_repr(self) -> str:
        return f"modalities={self.modalities}, every={self.every}, k={self.k}"


# -- wiring into a model ---------------------------------------------------------------------
# A model that follows its fusion holds ``self.fused_graphs`` (a FusedGraphRefresh) and two
# methods: ``fused_features(m) -> [N, d]`` (the current features its graph of ``m`` is built
# from) and ``install_fused_graph(m, csr)`` (put a rebuilt graph in use).


def follow_fusion(model: nn.Module) -> None:
    """Build the followed graphs now and restore them from every loaded state_dict (resume, best.pt)."""
    with torch.no_grad():
        for m in model.fused_graphs.modalities:
            model.install_fused_graph(m, model.fused_graphs.build(m, model.fused_features(m)))
    model.register_load_state_dict_post_hook(_restore_fused_graphs)


def _restore_fused_graphs(module: nn.Module, incompatible_keys) -> None:
    for m in module.fused_graphs.modalities:
        module.install_fused_graph(m, module.fused_graphs.graph(m))
    if module.fused_graphs.modalities:
        module._eval_cache = None


@torch.no_grad()
def refresh_fused_graphs(model: nn.Module, epoch: int | None = None) -> bool:
    """Rebuild the followed graphs from the current fused features (when due before ``epoch``, or now)."""
    r = model.fused_graphs
    if not r.modalities or (epoch is not None and not r.due(epoch)):
        return False
    for m in r.modalities:
        model.install_fused_graph(m, r.build(m, model.fused_features(m)))
    r.refreshes += 1
    model._eval_cache = None
    return True
