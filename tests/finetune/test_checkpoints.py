"""Checkpoints: resume equals an uninterrupted run; settings are checked; pretrained init works."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

from cliper.encoders.tiny import save_tiny_clip
from cliper.errors import ConfigError, DataError
from cliper.finetune import FinetuneConfig, finetune_clip

SMALL = dict(batch_size=8, held_out_fraction=0.25, hidden_size=32, layers=1, heads=2, projection_dim=16,
             bpe_merges=300)


def _rows(path):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]


def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_catalog, tmp_path):
    cat, img = tiny_catalog.meta, tiny_catalog.images
    full = finetune_clip(cat, img, tmp_path / "full", config=FinetuneConfig(epochs=3, **SMALL), progress=False)
    part = finetune_clip(cat, img, tmp_path / "part", config=FinetuneConfig(epochs=1, **SMALL), progress=False)
    assert part.last_dir.name == "epoch-0001"
    resumed = finetune_clip(cat, img, tmp_path / "part", config=FinetuneConfig(epochs=3, **SMALL), progress=False)
    assert resumed.resumed_from == 1
    a = CLIPModel.from_pretrained(full.last_dir).state_dict()
    b = CLIPModel.from_pretrained(resumed.last_dir).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert _rows(full.log_path) == _rows(resumed.log_path)
    # Nothing left to do: a finished run returns at once with the same result.
    again = finetune_clip(cat, img, tmp_path / "part", config=FinetuneConfig(epochs=3, **SMALL), progress=False)
    assert again.best_epoch == resumed.best_epoch and len(again.history) == 4


def test_resume_refuses_changed_settings(tiny_catalog, tmp_path):
    cat, img = tiny_catalog.meta, tiny_catalog.images
    finetune_clip(cat, img, tmp_path / "run", config=FinetuneConfig(epochs=1, **SMALL), progress=False)
    with pytest.raises(ConfigError, match="lr"):
        finetune_clip(cat, img, tmp_path / "run", config=FinetuneConfig(epochs=2, lr=0.01, **SMALL), progress=False)
    with pytest.raises(ConfigError, match="previous run"):
        finetune_clip(cat, img, tmp_path / "run", config=FinetuneConfig(epochs=1, **SMALL), resume=False,
                      progress=False)
    res = finetune_clip(cat, img, tmp_path / "run", config=FinetuneConfig(epochs=1, lr=0.01, **SMALL),
                        resume=False, overwrite=True, progress=False)
    assert res.resumed_from is None and len(res.history) == 2


def test_finetune_from_pretrained_folder_keeps_its_processor(tiny_catalog, tmp_path):
    init = save_tiny_clip(tmp_path / "pretrained", image_size=32, patch_size=8)
    before = CLIPModel.from_pretrained(init).state_dict()
    res = finetune_clip(tiny_catalog.meta, tiny_catalog.images, tmp_path / "run", init=str(init),
                        config=FinetuneConfig(epochs=1, batch_size=8, held_out_fraction=0.25, lr=1e-3),
                        progress=False)
    model = CLIPModel.from_pretrained(res.best_dir)
    processor = CLIPProcessor.from_pretrained(res.best_dir)
    assert model.config.vision_config.image_size == 32
    assert len(processor.tokenizer) == len(CLIPProcessor.from_pretrained(init).tokenizer)  # hub tokenizer kept
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    assert json.loads((res.out_dir / "finetune_config.json").read_text())["init"] == str(init)


def test_bad_inputs_raise_clear_errors(tiny_catalog, tmp_path):
    with pytest.raises(DataError, match="image folder"):
        finetune_clip(tiny_catalog.meta, tmp_path / "nope", tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="unknown views"):
        finetune_clip(tiny_catalog.meta, tiny_catalog.images, tmp_path / "run",
                      config=FinetuneConfig(views=("title", "colour")), progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        FinetuneConfig(batch_size=1)
    with pytest.raises(ConfigError, match="cannot load a CLIP"):
        finetune_clip(tiny_catalog.meta, tiny_catalog.images, tmp_path / "run", init=str(tmp_path / "missing"),
                      config=FinetuneConfig(epochs=1, **SMALL), progress=False)
