"""Inputs for the feature-store tests: the real 97-item sample, an id map, generated images."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from cliper.paths import shared_dataset

MISSING_IMAGE_IDS = (10, 20, 30)  # no file at all
CORRUPT_IMAGE_ID = 5
BY_ITEM_ID = (0, 1, 2)  # files named "<itemID>.png"; the rest by ASIN
EXTRA = {"ZZNOTINCAT1": 97, "ZZNOTINCAT2": 98, "ZZNOTINCAT3": 99}  # in the id map, not the catalogue


@dataclass
class Inputs:
    catalog: Path
    id_map: Path
    images: Path
    rows: list[dict]
    clip: Path


def build_inputs(root: Path) -> Inputs:
    from cliper.encoders.tiny import save_tiny_clip

    d = shared_dataset("amazon-baby")
    if d is None or not (d / "meta_sample.jsonl").is_file():
        pytest.skip("shared Amazon Baby sample not present")
    lines = (d / "meta_sample.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(x) for x in lines]
    root.mkdir(parents=True, exist_ok=True)
    catalog = root / "meta.jsonl"  # the real sample plus two malformed lines
    catalog.write_text("\n".join(lines[:3] + ["{broken"] + lines[3:40] + ["[1, 2]"] + lines[40:]) + "\n", encoding="utf-8")
    id_map = root / "i_id_mapping.tsv"
    pairs = [(r["asin"], r["itemID"]) for r in rows] + list(EXTRA.items())
    id_map.write_text("asin\titemID\n" + "".join(f"{a}\t{i}\n" for a, i in pairs), encoding="utf-8")
    images = root / "images"
    images.mkdir(exist_ok=True)
    for r in rows:
        i = r["itemID"]
        if i in MISSING_IMAGE_IDS:
            continue
        name = f"{i}.png" if i in BY_ITEM_ID else f"{r['asin']}.png"
        if i == CORRUPT_IMAGE_ID:
            (images / name).write_bytes(b"\x89PNG\r\n\x1a\n truncated garbage")
            continue
        Image.new("RGB", (24 + i % 7, 20), ((i * 37) % 256, (i * 11) % 256, 128)).save(images / name)
    Image.new("RGB", (20, 20), (1, 2, 3)).save(images / "ZZNOTINCAT2.png")  # absent item, image by key
    clip = save_tiny_clip(root / "clip", seed=0)
    return Inputs(catalog, id_map, images, rows, clip)


def item_image(inputs: Inputs, item_id: int) -> Image.Image:
    row = inputs.rows[item_id]
    name = f"{item_id}.png" if item_id in BY_ITEM_ID else f"{row['asin']}.png"
    return Image.open(inputs.images / name).convert("RGB")
