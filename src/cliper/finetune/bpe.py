"""A small BPE vocabulary learned from the catalogue's own text, saved in CLIP's tokenizer format.

A from-scratch model reads words far faster through word-sized tokens than through bytes
(a title shrinks from ~50 byte tokens to ~10), so it learns the catalogue in a few epochs.
The vocabulary starts from CLIP's 512 byte symbols (so any text still encodes) and adds
merges learned greedily by pair frequency; ``CLIPTokenizer`` loads it like a hub vocabulary.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from cliper.encoders.tokenizer import END_TOKEN, START_TOKEN, _byte_alphabet

EOW = "</w>"


def _pre_tokenize(texts: list[str]) -> Counter:
    """Words as CLIPTokenizer sees them (normalised, split, byte-mapped), counted."""
    from cliper.encoders.tokenizer import save_byte_level_tokenizer
    from transformers import CLIPTokenizer
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        save_byte_level_tokenizer(tmp)
        backend = CLIPTokenizer.from_pretrained(tmp).backend_tokenizer
    counts: Counter = Counter()
    for text in texts:
        normal = backend.normalizer.normalize_str(text)
        for word, _ in backend.pre_tokenizer.pre_tokenize_str(normal):
            counts[word] += 1
    return counts


def learn_merges(word_counts: Counter, n_merges: int, min_count: int = 2) -> list[tuple[str, str]]:
    """Greedy BPE merges (most frequent adjacent pair first; ties broken by the pair itself)."""
    words = [list(w[:-1]) + [w[-1] + EOW] for w in word_counts]
    freqs = list(word_counts.values())
    pair_counts: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for k, syms in enumerate(words):
        for pair in zip(syms, syms[1:]):
            pair_counts[pair] += freqs[k]
            where[pair].add(k)
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges and pair_counts:
        best = max(pair_counts.items(), key=lambda kv: (kv[1], kv[0]))
        pair, count = best
        if count < min_count:
            break
        merges.append(pair)
        joined = pair[0] + pair[1]
        for k in list(where.pop(pair, ())):
            syms = words[k]
            for p in zip(syms, syms[1:]):  # remove this word's old pairs
                pair_counts[p] -= freqs[k]
                if pair_counts[p] <= 0:
                    del pair_counts[p]
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == pair[0] and syms[i + 1] == pair[1]:
                    out.append(joined)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            words[k] = out
            for p in zip(out, out[1:]):
                pair_counts[p] += freqs[k]
                where[p].add(k)
        pair_counts.pop(pair, None)
    return merges


def save_catalog_tokenizer(folder: str | Path, texts: list[str], n_merges: int = 2000, max_length: int = 77) -> int:
    """Learn merges on ``texts`` and write a CLIP tokenizer to ``folder``; returns the vocabulary size.

    Ids: 256 byte symbols, the same with ``</w>``, the merged symbols, then start and end tokens last.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = learn_merges(_pre_tokenize(texts), n_merges)
    symbols = _byte_alphabet()
    vocab: dict[str, int] = {s: i for i, s in enumerate(symbols)}
    for s in symbols:
        vocab[s + EOW] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab[START_TOKEN] = len(vocab)
    vocab[END_TOKEN] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    config = {
        "tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "bos_token": START_TOKEN,
        "eos_token": END_TOKEN, "unk_token": END_TOKEN, "pad_token": END_TOKEN, "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = {"bos_token": START_TOKEN, "eos_token": END_TOKEN, "unk_token": END_TOKEN, "pad_token": END_TOKEN}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return len(vocab)
