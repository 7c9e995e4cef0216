"""A small CLIP trained from scratch on the demo catalogue learns to match images and titles."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from transformers import CLIPModel, CLIPProcessor

from cliper.finetune import FinetuneConfig, finetune_clip
from cliper.finetune.images import load_image_tensor, prepare_batch
from cliper.finetune.pairs import build_training_items, held_out_mask
from cliper.finetune.retrieval import retrieval_metrics

CFG = dict(epochs=12, batch_size=16, held_out_fraction=0.2, seed=0)


def _features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def test_held_out_title_retrieval_far_above_chance(small_catalog, tmp_path):
    res = finetune_clip(small_catalog.meta, small_catalog.images, tmp_path / "run",
                        config=FinetuneConfig(**CFG), progress=False)
    rows = [json.loads(line) for line in res.log_path.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(CFG["epochs"] + 1))
    for key in ("title_i2t_R@1", "title_i2t_R@5", "title_t2i_R@1", "title_t2i_R@5", "title_chance_R@5",
                "global_i2t_R@5"):
        assert all(key in r for r in rows)
    assert all(r["synthetic_data"] is True for r in rows)
    chance = rows[0]["title_chance_R@5"]
    assert 0 < chance < 0.15
    # The acceptance bar: held-out image -> title Recall@5 at least 5x chance.
    assert res.best_metrics["title_i2t_R@5"] >= 5 * chance
    assert res.best_metrics["title_t2i_R@5"] >= 3 * chance
    assert rows[-1]["train_loss"] < rows[1]["train_loss"]
    assert res.best_epoch == max(rows[1:], key=lambda r: r["title_i2t_R@5"])["epoch"]
    # Only the last `keep_checkpoints` epoch folders remain.
    kept = sorted(p.name for p in (res.out_dir / "checkpoints").iterdir())
    assert kept == [f"epoch-{e:04d}" for e in (CFG["epochs"] - 1, CFG["epochs"])]

    # best/ loads through the standard transformers path and reproduces the logged metric.
    model = CLIPModel.from_pretrained(res.best_dir).eval()
    processor = CLIPProcessor.from_pretrained(res.best_dir)
    info = json.loads((res.best_dir / "training_info.json").read_text())
    assert info["synthetic_data"] is True and info["epoch"] == res.best_epoch
    items, _ = build_training_items(small_catalog.meta, small_catalog.images, ("title",))
    held = held_out_mask([it.asin for it in items], CFG["held_out_fraction"], CFG["seed"])
    eval_items = [it for it, h in zip(items, held) if h]
    size = model.config.vision_config.image_size
    pix = prepare_batch(load_image_tensor([it.image_path for it in eval_items], size),
                        processor.image_processor.image_mean, processor.image_processor.image_std, None)
    titles = [it.texts["title"] for it in eval_items]
    enc = processor.tokenizer(titles, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        img = F.normalize(_features(model.get_image_features(pixel_values=pix)), dim=-1)
        txt = F.normalize(_features(model.get_text_features(**enc)), dim=-1)
    again = retrieval_metrics(img, txt, titles)
    assert abs(again["i2t_R@5"] - res.best_metrics["title_i2t_R@5"]) < 1e-6
