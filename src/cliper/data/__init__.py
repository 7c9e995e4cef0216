"""Interaction data: reading MMRec ``.inter`` files, building split datasets, sampling."""

from cliper.data.interactions import InteractionData, Split, TrainView, load_inter

__all__ = ["InteractionData", "Split", "TrainView", "load_inter"]
