"""Fusion of V view embeddings into one text feature per item (cliper-method.md section 2)."""

from cliper.fusion.layers import (
    FUSIONS,
    ConcatFusion,
    LearnableAttentionFusion,
    MeanFusion,
    MLPFusion,
    SimilarityAttentionFusion,
    SumFusion,
    ViewFusion,
    build_fusion,
    fuse_views,
)

__all__ = [
    "FUSIONS",
    "ConcatFusion",
    "LearnableAttentionFusion",
    "MLPFusion",
    "MeanFusion",
    "SimilarityAttentionFusion",
    "SumFusion",
    "ViewFusion",
    "build_fusion",
    "fuse_views",
]
