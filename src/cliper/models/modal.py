"""Item-feature access shared by the multimodal backbones (LATTICE, SLMRec, BM3, FREEDOM).

MMRec loads the feature matrices of LATTICE, BM3 and FREEDOM with
``nn.Embedding.from_pretrained(..., freeze=False)``: the raw features themselves are
trained. Here features always come from :class:`ItemFeatures` (so a trainable fusion
keeps its gradients and CLIPER / vanilla features are interchangeable); with
``train_features`` a zero-initialised residual table is added to them, which under Adam
follows exactly the trajectory of training the feature table itself.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

MODAL_ORDER = ("image", "text")


def present_modalities(features, wanted: tuple[str, ...] = MODAL_ORDER) -> list[str]:
    """The modalities of ``wanted`` that ``features`` holds, in a fixed order (image, text)."""
    return [m for m in wanted if features is not None and features.has(m)]


def feature_residuals(features, modalities: list[str], enabled: bool) -> nn.ParameterDict | None:
    """Zero [N, d] trainable residuals per modality (None when disabled)."""
    if not enabled:
        return None
    return nn.ParameterDict(
        {m: nn.Parameter(torch.zeros(features.n_items, features.dim(m))) for m in modalities}
    )


def modal_features(features, residuals: nn.ParameterDict | None, modality: str,
                   rows: torch.Tensor | None = None) -> torch.Tensor:
    """Features of ``modality`` (only ``rows`` when given), plus the trainable residual if any.

    Calls ``features.get`` every time so a trainable fusion receives gradients.
    """
    x = features.get(modality, rows)  # a trainable fusion then fuses only ``rows``
    if residuals is not None:
        r = residuals[modality]
        x = x + (r if rows is None else r.index_select(0, rows))
    return x


def projected_features(features, residuals: nn.ParameterDict | None, modality: str, weight: torch.Tensor,
                       bias: torch.Tensor | None, linear: Callable = F.linear) -> torch.Tensor:
    """``linear(x + r, weight, bias)`` of the whole table, computed as ``linear(x) + linear(r)``.

    The sum of a table and its residual is as large as the table (Sports' image features: 300 MB,
    over glibc's mmap threshold), so a fresh block was mapped and page-faulted in at every call:
    0.79 s of LATTICE's 7.3 s Sports evaluation pass, against 0.1 s for the second product.
    The values differ from the sum's product by float rounding only.
    """
    x = features.get(modality)
    out = linear(x, weight, bias)
    if residuals is not None:
        out = out + linear(residuals[modality], weight, None)
    return out


def modality_weights(modalities: list[str], image_weight: float) -> dict[str, float]:
    """FREEDOM-style fixed mixing weights: ``image_weight`` for image, the rest for text."""
    if modalities == ["image", "text"]:
        return {"image": float(image_weight), "text": 1.0 - float(image_weight)}
    return {m: 1.0 for m in modalities}
