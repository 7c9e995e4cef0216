"""Decode image bytes into an RGB PIL image, turning every failure into a reason.

Hostile images are bounded: the header is read first and an image over
:data:`MAX_PIXELS` is refused before any pixel is decoded (a 196-megapixel PNG of
190 KB would otherwise take ~2 GB); JPEGs are decoded at a reduced scale
(``draft``) and every large image is shrunk (``reduce``) to about
:data:`WORKING_SIDE` pixels on its short side, which is far more than CLIP's
224-336 pixel input needs.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

MAX_PIXELS = 40_000_000  # decoded pixels (w*h) an image may have; Pillow's own bomb limit is 179M
MAX_IMAGE_BYTES = 20_000_000  # bytes of an image file read at all (also the download limit)
WORKING_SIDE = 512  # large images are reduced to about this short side before encoding


@dataclass(frozen=True)
class ImageFailure:
    """Why an item has no usable image: ``no_file``, ``no_url``, ``download_failed``, ``corrupt``,
    ``too_large`` (over :data:`MAX_PIXELS` or :data:`MAX_IMAGE_BYTES`)."""

    reason: str
    detail: str = ""


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image | ImageFailure:
    """RGB image, or ``ImageFailure`` (``corrupt`` / ``too_large``) for bytes PIL cannot safely decode."""
    if len(data) > MAX_IMAGE_BYTES:
        return ImageFailure("too_large", f"{len(data)} bytes (limit {MAX_IMAGE_BYTES})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))  # reads the header only
            if im.format == "JPEG":
                im.draft("RGB", (WORKING_SIDE, WORKING_SIDE))  # decode at 1/2, 1/4 or 1/8 scale
            w, h = im.size
            if w * h > max_pixels:
                return ImageFailure("too_large", f"{w}x{h} pixels (limit {max_pixels:,})")
            im.load()
        if im.width < 1 or im.height < 1:
            return ImageFailure("corrupt", "empty image")
        im = im.convert("RGB")
        factor = min(im.size) // WORKING_SIDE
        return im.reduce(factor) if factor >= 2 else im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return ImageFailure("too_large", str(exc)[:200])
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return ImageFailure("corrupt", f"{type(exc).__name__}: {exc}"[:200])
