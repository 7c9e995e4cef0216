"""Image loading, light augmentation and normalisation as tensors (whole catalogue kept in memory).

Preprocessing matches CLIP's: resize the shortest edge (bicubic), centre-crop to a square,
scale to [0, 1], normalise with the processor's mean and std.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cliper.errors import DataError


def load_image_array(path: Path, size: int) -> np.ndarray:
    """HxWx3 uint8 array of the image resized and centre-cropped to ``size``."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.Resampling.BICUBIC)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read image ({exc})", path) from None


def load_image_tensor(paths: list[Path], size: int) -> torch.Tensor:
    """N x 3 x size x size uint8 tensor."""
    arr = np.stack([load_image_array(p, size) for p in paths])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def normalise(batch: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    x = batch.float() / 255.0
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def augment(batch: torch.Tensor, generator: torch.Generator, max_shift: float = 0.08) -> torch.Tensor:
    """Random translation (edge-padded crop) and brightness/contrast jitter of a float batch in [0, 1]."""
    n, _, h, w = batch.shape
    pad = max(1, int(round(max_shift * h)))
    padded = torch.nn.functional.pad(batch, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    out = torch.stack([padded[k, :, dy[k] : dy[k] + h, dx[k] : dx[k] + w] for k in range(n)])
    bright = 1.0 + 0.2 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    contrast = 1.0 + 0.2 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean * bright).clamp(0.0, 1.0)


def prepare_batch(
    images: torch.Tensor, mean: list[float], std: list[float], generator: torch.Generator | None
) -> torch.Tensor:
    """uint8 batch -> normalised float batch, augmented when a generator is given."""
    x = images.float() / 255.0
    if generator is not None:
        x = augment(x, generator)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s
