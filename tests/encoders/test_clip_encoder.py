"""ClipEncoder: the user's loading path on a tiny saved CLIP, batching, long text, images, offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from cliper.encoders import load_encoder
from cliper.encoders.clip import ClipEncoder
from cliper.encoders.device import pick_device, pick_dtype
from cliper.encoders.tiny import save_tiny_clip
from cliper.errors import ConfigError


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny", seed=1)


@pytest.fixture(scope="module")
def enc(clip_dir):
    return ClipEncoder.from_pretrained(clip_dir, device="cpu")


def _reference(clip_dir, texts=None, images=None):
    model, proc = CLIPModel.from_pretrained(clip_dir).eval(), CLIPProcessor.from_pretrained(clip_dir)
    with torch.no_grad():
        if texts is not None:
            out = model.get_text_features(**proc(text=texts, return_tensors="pt", padding=True))
        else:
            out = model.get_image_features(**proc(images=images, return_tensors="pt"))
    x = (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_loads_through_user_path_and_matches_plain_transformers(clip_dir, enc):
    assert isinstance(load_encoder(clip_dir, device="cpu"), ClipEncoder)
    assert enc.dim == 32 and enc.max_text_length == 77
    texts = ["a cup", "The product brand is Time Too.", "x", "blue baby stroller with wheels"]
    got = enc.encode_texts(texts, batch_size=3)  # sorted by length, batched, then restored to input order
    assert got.shape == (4, 32) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, _reference(clip_dir, texts=texts), atol=1e-5)
    perm = [2, 0, 3, 1]
    np.testing.assert_allclose(enc.encode_texts([texts[i] for i in perm]), got[perm], atol=1e-5)


def test_images_match_processor_path(clip_dir, enc):
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)) for i in range(5)]
    ims.append(ims[0].convert("L"))  # greyscale is converted to RGB
    got = enc.encode_images(ims, batch_size=4)
    assert got.shape == (6, 32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got[:5], _reference(clip_dir, images=ims[:5]), atol=1e-5)


def _encode_ids(enc, seqs):
    """Reference: one forward per token window, with start/end tokens, no batching."""
    rows = []
    with torch.no_grad():
        for seq in seqs:
            ids = torch.tensor([[enc.tokenizer.bos_token_id, *seq, enc.tokenizer.eos_token_id]])
            out = enc.model.get_text_features(input_ids=ids)
            x = (out if isinstance(out, torch.Tensor) else out.pooler_output)[0].numpy()
            rows.append(x / np.linalg.norm(x))
    return np.stack(rows)


def test_truncate_counts_and_window_averages(clip_dir, enc):
    long = "soft knobby teething beads on a cord " * 8  # ~300 byte tokens, > 75
    before = enc.stats.truncated_texts
    t = enc.encode_texts([long])
    assert enc.stats.truncated_texts == before + 1
    ids = enc.tokenizer([long], add_special_tokens=False)["input_ids"][0]
    np.testing.assert_allclose(t, _encode_ids(enc, [ids[:75]]), atol=1e-5)

    win = ClipEncoder.from_pretrained(clip_dir, device="cpu", long_text="window")
    w = win.encode_texts([long, "short"])
    assert win.stats.windowed_texts == 1 and win.stats.text_windows == 1 + -(-len(ids) // 75)
    each = _encode_ids(win, [ids[i : i + 75] for i in range(0, len(ids), 75)])
    mean = each.mean(0) / np.linalg.norm(each.mean(0))
    np.testing.assert_allclose(w[0], mean, atol=1e-4)
    assert not np.allclose(w[0], t[0], atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, atol=1e-5)


def test_long_clip_shape_keeps_248_tokens(tmp_path):
    d = save_tiny_clip(tmp_path / "long", max_text_length=248)
    enc = ClipEncoder.from_pretrained(d, device="cpu")
    assert enc.max_text_length == 248
    enc.encode_texts(["word " * 40])  # 200 tokens: fits 248, would not fit 77
    assert enc.stats.truncated_texts == 0


def test_offline_mode_fails_fast_with_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="cannot load CLIP model 'nobody/no-such-clip'"):
        ClipEncoder.from_pretrained("nobody/no-such-clip", device="cpu")
    with pytest.raises(ConfigError):
        ClipEncoder.from_pretrained("nobody/no-such-clip", device="cpu", local_files_only=True)


def test_device_and_dtype_choice(clip_dir):
    assert pick_device("cpu").type == "cpu"
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cuda")) == torch.float16
    assert pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(ConfigError, match="CUDA"):
            pick_device("cuda")
    with pytest.raises(ConfigError):
        ClipEncoder.from_pretrained(clip_dir, device="cpu", long_text="chars")


def test_fingerprint_changes_with_weights_and_mode(tmp_path):
    a = ClipEncoder.from_pretrained(save_tiny_clip(tmp_path / "a", seed=0), device="cpu")
    b = ClipEncoder.from_pretrained(save_tiny_clip(tmp_path / "b", seed=1), device="cpu")
    w = ClipEncoder.from_pretrained(tmp_path / "a", device="cpu", long_text="window")
    assert len({a.fingerprint(), b.fingerprint(), w.fingerprint()}) == 3
