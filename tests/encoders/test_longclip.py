"""Long-CLIP conversion: OpenAI-format checkpoint -> CLIPModel folder, checked by round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPModel

from cliper.encoders.clip import ClipEncoder
from cliper.encoders.longclip import convert_longclip_checkpoint, hf_to_openai_state_dict, openai_to_hf_state_dict
from cliper.encoders.tiny import save_tiny_clip
from cliper.errors import DataError


def test_round_trip_gives_identical_embeddings(tmp_path):
    src = save_tiny_clip(tmp_path / "long", max_text_length=248, seed=3)
    sd = hf_to_openai_state_dict(CLIPModel.from_pretrained(src))
    assert sd["positional_embedding"].shape[0] == 248 and "transformer.resblocks.0.attn.in_proj_weight" in sd
    torch.save(sd, tmp_path / "longclip-tiny.pt")
    out = convert_longclip_checkpoint(tmp_path / "longclip-tiny.pt", tmp_path / "conv", processor_from=src,
                                      text_heads=2, vision_heads=2)
    a, b = ClipEncoder.from_pretrained(src, device="cpu"), ClipEncoder.from_pretrained(out, device="cpu")
    assert b.max_text_length == 248 and b.tokenizer.model_max_length == 248
    texts = ["a long product description " * 6, "cup"]
    np.testing.assert_allclose(a.encode_texts(texts), b.encode_texts(texts), atol=1e-6)
    im = [Image.new("RGB", (40, 30), (10, 120, 200))]
    np.testing.assert_allclose(a.encode_images(im), b.encode_images(im), atol=1e-6)


def test_positional_embedding_res_is_folded_after_first_20(tmp_path):
    src = save_tiny_clip(tmp_path / "long", max_text_length=248)
    sd = hf_to_openai_state_dict(CLIPModel.from_pretrained(src))
    res = torch.randn_like(sd["positional_embedding"])
    sd["positional_embedding_res"] = res
    pos = openai_to_hf_state_dict(sd)["text_model.embeddings.position_embedding.weight"]
    assert torch.equal(pos[:20], sd["positional_embedding"][:20]) and torch.equal(pos[20:], res[20:])


def test_bad_checkpoint_is_a_data_error(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(DataError, match="not an OpenAI-format CLIP"):
        convert_longclip_checkpoint(tmp_path / "x.pt", tmp_path / "o", processor_from=tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(DataError, match="not a readable"):
        convert_longclip_checkpoint(tmp_path / "junk.pt", tmp_path / "o", processor_from=tmp_path)
