"""Decode image bytes into an RGB PIL image, turning every failure into a reason."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

Image.MAX_IMAGE_PIXELS = 200_000_000  # product photos; larger is a decompression bomb


@dataclass(frozen=True)
class ImageFailure:
    """Why an item has no usable image: ``no_file``, ``no_url``, ``download_failed``, ``corrupt``."""

    reason: str
    detail: str = ""


def decode_image(data: bytes) -> Image.Image | ImageFailure:
    """RGB image, or ``ImageFailure('corrupt', ...)`` for bytes PIL cannot fully decode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            im.load()
        if im.width < 1 or im.height < 1:
            return ImageFailure("corrupt", "empty image")
        return im.convert("RGB")
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return ImageFailure("corrupt", f"{type(exc).__name__}: {exc}"[:200])
