"""A byte-level CLIP tokenizer for models trained or built here.

Hub CLIP folders ship their own BPE vocabulary; none can be downloaded on offline
machines. A tokenizer over the 256-symbol byte alphabet (each symbol also with the
``</w>`` end-of-word marker), plus start/end tokens and no merges, loads with
``CLIPTokenizer`` / ``CLIPProcessor`` exactly like a hub one.
"""

from __future__ import annotations

import json
from pathlib import Path

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP's reversible byte-to-unicode table, in byte order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    table: dict[int, str] = {}
    extra = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def byte_level_vocab() -> dict[str, int]:
    """Vocabulary: 256 byte symbols, the same with ``</w>``, then start and end tokens."""
    symbols = _byte_alphabet()
    vocab = {s: i for i, s in enumerate(symbols)}
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    vocab[START_TOKEN] = len(vocab)
    vocab[END_TOKEN] = len(vocab)
    return vocab


BYTE_VOCAB_SIZE = 514


def save_byte_level_tokenizer(folder: str | Path, max_length: int = 77) -> Path:
    """Write ``vocab.json``, ``merges.txt`` and tokenizer config so ``CLIPTokenizer`` loads it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(byte_level_vocab(), ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": max_length,
        "bos_token": START_TOKEN,
        "eos_token": END_TOKEN,
        "unk_token": END_TOKEN,
        "pad_token": END_TOKEN,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = {"bos_token": START_TOKEN, "eos_token": END_TOKEN, "unk_token": END_TOKEN, "pad_token": END_TOKEN}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return folder
