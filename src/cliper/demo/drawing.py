"""Product pictures drawn with Pillow: shape = product type, fill = colour, texture = pattern,
a small corner mark = brand. Position, size, rotation, shade and pixel noise vary per item so no
two images are identical, yet the attributes stay visible.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

from cliper.demo.latent import Brand, Item
from cliper.demo import vocabulary as V

_SUPERSAMPLE = 4  # draw large, then downsample: smooth edges without anti-aliasing primitives


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]] | None:
    """Vertices of polygonal shapes (None for shapes drawn with ellipses)."""
    def rot(points):
        ca, sa = math.cos(angle), math.sin(angle)
        return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in points]

    if shape == "square":
        return rot([(-r, -r), (r, -r), (r, r), (-r, r)])
    if shape == "triangle":
        return rot([(0, -r), (r * 0.95, r * 0.75), (-r * 0.95, r * 0.75)])
    if shape == "diamond":
        return rot([(0, -r), (r * 0.75, 0), (0, r), (-r * 0.75, 0)])
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
        return rot(pts)
    if shape == "hexagon":
        return rot([(r * math.cos(k * math.pi / 3), r * math.sin(k * math.pi / 3)) for k in range(6)])
    if shape == "cross":
        w = r * 0.38
        return rot([(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w),
                    (-r, w), (-r, -w), (-w, -w)])
    if shape == "tall_rect":
        return rot([(-r * 0.45, -r), (r * 0.45, -r), (r * 0.45, r), (-r * 0.45, r)])
    if shape == "wide_rect":
        return rot([(-r, -r * 0.55), (r, -r * 0.55), (r, r * 0.55), (-r, r * 0.55)])
    if shape == "heart":
        pts = []
        for k in range(40):
            t = 2 * math.pi * k / 40
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((x * r / 17, y * r / 17))
        return rot(pts)
    if shape == "semicircle":
        pts = [(r * math.cos(math.pi * k / 24), -r * 0.2 + r * math.sin(math.pi * k / 24)) for k in range(25)]
        return rot([(x, y) for x, y in pts])
    return None


def _shape_mask(size: int, shape: str, cx: float, cy: float, r: float, angle: float) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(mask)
    poly = _polygon(shape, cx, cy, r, angle)
    if poly is not None:
        d.polygon(poly, fill=255)
    elif shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        d.ellipse([cx - r * 0.5, cy - r * 0.5, cx + r * 0.5, cy + r * 0.5], fill=0)
    else:  # pragma: no cover - vocabulary and drawer are kept in sync by tests
        raise ValueError(f"unknown shape {shape!r}")
    return mask


def _pattern_layer(size: int, pattern: str, colour: tuple[int, int, int], step: int, phase: int) -> Image.Image | None:
    if pattern == "plain":
        return None
    # Pattern ink: a darker shade of the fill (a lighter one for dark fills), so the fill stays dominant.
    dark = sum(colour) < 200
    ink = tuple(int(min(255, c * 0.4 + 150)) if dark else int(c * 0.45) for c in colour)
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    if pattern == "stripes":
        for x in range(-size, 2 * size, step):
            d.line([(x + phase, 0), (x + phase + size, size)], fill=ink + (255,), width=max(1, step // 3))
    elif pattern == "dots":
        rad = max(1, step // 5)
        for y in range(phase % step, size, step):
            for x in range(phase % step, size, step):
                d.ellipse([x - rad, y - rad, x + rad, y + rad], fill=ink + (255,))
    elif pattern == "checks":
        for y in range(0, size, step):
            for x in range(0, size, step):
                if ((x // step) + (y // step)) % 2 == 0:
                    d.rectangle([x + step // 4, y + step // 4, x + step - step // 4, y + step - step // 4],
                                fill=ink + (255,))
    return layer


def _brand_mark(canvas: Image.Image, brand: Brand, size: int) -> None:
    d = ImageDraw.Draw(canvas)
    m = size // 7
    pad = size // 24
    x0 = pad if "left" in brand.corner else size - pad - m
    y0 = pad if "top" in brand.corner else size - pad - m
    cx, cy, r = x0 + m / 2, y0 + m / 2, m / 2
    poly = _polygon(brand.mark_shape, cx, cy, r, 0.0)
    if poly is not None:
        d.polygon(poly, fill=brand.mark_colour)
    else:
        d.ellipse([x0, y0, x0 + m, y0 + m], fill=brand.mark_colour)


def draw_item(rng: np.random.Generator, item: Item, brand: Brand, image_size: int = 64) -> Image.Image:
    """An RGB picture of ``item`` at ``image_size`` pixels square."""
    big = image_size * _SUPERSAMPLE
    bg = tuple(int(v) for v in rng.integers(228, 252, size=3))
    canvas = Image.new("RGB", (big, big), bg)
    base = np.array(V.COLOURS[item.colour], dtype=float)
    fill = tuple(int(v) for v in np.clip(base + rng.normal(0.0, 10.0, size=3), 0, 255))
    r = big * float(rng.uniform(0.27, 0.36))
    cx = big / 2 + big * float(rng.uniform(-0.06, 0.06))
    cy = big / 2 + big * float(rng.uniform(-0.06, 0.06))
    angle = float(rng.uniform(-0.25, 0.25))
    mask = _shape_mask(big, item.shape, cx, cy, r, angle)
    body = Image.new("RGB", (big, big), fill)
    layer = _pattern_layer(big, item.pattern, fill, step=big // int(rng.integers(5, 8)),
                           phase=int(rng.integers(0, big // 8)))
    if layer is not None:
        body.paste(layer, (0, 0), layer)
    canvas.paste(body, (0, 0), mask)
    _brand_mark(canvas, brand, big)
    small = canvas.resize((image_size, image_size), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=float) + rng.normal(0.0, 3.0, size=(image_size, image_size, 3))
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def jpeg_bytes(image: Image.Image, quality: int = 92) -> bytes:
    """Encode deterministically (no EXIF, no timestamps)."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()
