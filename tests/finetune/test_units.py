"""Retrieval metrics, the catalogue BPE tokenizer and the finetune command."""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPTokenizer

from cliper.cli.main import main
from cliper.finetune.bpe import learn_merges, save_catalog_tokenizer
from cliper.finetune.retrieval import retrieval_metrics


def test_perfect_embeddings_retrieve_everything_and_chance_matches_simulation():
    emb = F.normalize(torch.randn(40, 8), dim=-1)
    keys = [f"t{i}" for i in range(40)]
    m = retrieval_metrics(emb, emb, keys)
    assert m["i2t_R@1"] == 1.0 and m["t2i_R@5"] == 1.0
    assert abs(m["chance_R@5"] - 5 / 40) < 1e-9
    # Duplicated texts: a retrieved twin counts, and chance rises accordingly.
    dup = [f"t{i // 2}" for i in range(40)]
    g = torch.Generator().manual_seed(0)
    sims = [retrieval_metrics(F.normalize(torch.randn(40, 8, generator=g), dim=-1),
                              F.normalize(torch.randn(40, 8, generator=g), dim=-1), dup)["i2t_R@5"]
            for _ in range(300)]
    chance = retrieval_metrics(emb, emb, dup)["chance_R@5"]
    assert chance > 5 / 40
    assert abs(np.mean(sims) - chance) < 0.02


def test_catalog_bpe_makes_frequent_words_single_tokens(tmp_path):
    texts = ["The product title is Blue Star Mobile."] * 20 + ["Red Ball &amp; rattle"] * 5
    size = save_catalog_tokenizer(tmp_path, texts, n_merges=200)
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    assert len(tok) == size
    pieces = tok.convert_ids_to_tokens(tok("The product title is Blue Star Mobile.")["input_ids"])
    assert pieces[1:-1] == ["the</w>", "product</w>", "title</w>", "is</w>", "blue</w>", "star</w>",
                            "mobile</w>", ".</w>"]
    assert tok.bos_token_id == size - 2 and tok.eos_token_id == size - 1
    unseen = tok("zyxw q 42 café")["input_ids"]  # unseen text still encodes byte by byte, no unknowns
    assert tok.unk_token_id not in unseen[1:-1]
    assert learn_merges(Counter({"ab": 3, "cd": 1}), 10) == [("a", "b</w>")]


def test_finetune_command_trains_and_reports(monkeypatch, tiny_catalog, tmp_path, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["cliper", "finetune", "--catalog", str(tiny_catalog.meta), "--images",
                                      str(tiny_catalog.images), "--output", str(out), "--epochs", "1",
                                      "--batch-size", "8", "--held-out", "0.25"])
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    text = capsys.readouterr().out
    assert "SYNTHETIC" in text and "best model" in text
    assert (out / "best" / "config.json").exists()
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    monkeypatch.setattr(sys, "argv", ["cliper", "finetune", "--catalog", str(tmp_path / "no.jsonl"), "--images",
                                      str(tiny_catalog.images), "--output", str(out)])
    try:
        main()
    except SystemExit as exc:
        assert exc.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no.jsonl" in err
