"""Convert an original Long-CLIP (or OpenAI CLIP) ``.pt`` checkpoint into a ``CLIPModel`` folder.

Long-CLIP is CLIP with 248 text positions instead of 77; everything else keeps
OpenAI CLIP's layout. The original checkpoints (``longclip-B.pt``, ``longclip-L.pt``)
are OpenAI-format state dicts, which ``transformers`` cannot load directly. This
module renames and reshapes their tensors into Hugging Face ``CLIPModel`` keys, infers
the config from tensor shapes, and saves the folder with a tokenizer/image processor
taken from a matching CLIP (``openai/clip-vit-large-patch14`` for Long-CLIP-L), its
``model_max_length`` set to 248::

    cliper convert-longclip longclip-L.pt models/longclip-L --processor-from openai/clip-vit-large-patch14
    cliper extract ... --encoder models/longclip-L

Position embeddings: the public Long-CLIP model code adds ``positional_embedding``
for the first 20 positions and ``positional_embedding_res`` for the rest (two
masks). When a checkpoint holds ``positional_embedding_res`` the converter folds
both into one table the same way (rows ``< keep`` from the first, the rest from
the second); otherwise ``positional_embedding`` is used as is. Check a converted
real checkpoint once against Long-CLIP's own ``encode_text`` before relying on it.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import torch

from cliper.errors import ConfigError, DataError

_BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}


def load_openai_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pt`` checkpoint (plain state dict, ``{"state_dict": ...}`` or TorchScript)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("checkpoint not found", path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as exc:
            raise DataError(f"not a readable PyTorch checkpoint ({type(exc).__name__})", path) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or "token_embedding.weight" not in obj:
        raise DataError("not an OpenAI-format CLIP state dict (no token_embedding.weight)", path)
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _layers(sd: dict[str, torch.Tensor], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"resblocks\.(\d+)\.")
    return 1 + max(int(m.group(1)) for k in sd if (m := pat.match(k)))


def config_from_state_dict(sd: dict[str, torch.Tensor], text_heads: int | None = None,
                           vision_heads: int | None = None, token_ids: dict[str, int] | None = None):
    """A ``CLIPConfig`` matching the tensor shapes (heads default to width / 64, as in OpenAI CLIP)."""
    from transformers import CLIPConfig

    if "visual.conv1.weight" not in sd or "visual.proj" not in sd:
        raise ConfigError("only ViT image towers are supported (no visual.conv1.weight / visual.proj)")
    tw = sd["ln_final.weight"].shape[0]
    vw = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = math.isqrt(sd["visual.positional_embedding"].shape[0] - 1)
    text = dict(
        vocab_size=sd["token_embedding.weight"].shape[0],
        hidden_size=tw,
        intermediate_size=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=_layers(sd, "transformer."),
        num_attention_heads=text_heads or max(1, tw // 64),
        max_position_embeddings=sd["positional_embedding"].shape[0],
        hidden_act="quick_gelu",
        **(token_ids or {}),
    )
    vision = dict(
        hidden_size=vw,
        intermediate_size=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=_layers(sd, "visual.transformer."),
        num_attention_heads=vision_heads or max(1, vw // 64),
        image_size=patch * grid,
        patch_size=patch,
        hidden_act="quick_gelu",
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=sd["text_projection"].shape[1])


def openai_to_hf_state_dict(sd: dict[str, torch.Tensor], keep_positions: int = 20) -> dict[str, torch.Tensor]:
    """Rename/reshape OpenAI-format tensors to ``CLIPModel`` keys (see module docstring for positions)."""
    out: dict[str, torch.Tensor] = {}
    pos = sd["positional_embedding"]
    if "positional_embedding_res" in sd:
        pos = pos.clone()
        pos[keep_positions:] = sd["positional_embedding_res"][keep_positions:]
    out["text_model.embeddings.token_embedding.weight"] = sd["token_embedding.weight"]
    out["text_model.embeddings.position_embedding.weight"] = pos
    out["text_model.final_layer_norm.weight"] = sd["ln_final.weight"]
    out["text_model.final_layer_norm.bias"] = sd["ln_final.bias"]
    out["text_projection.weight"] = sd["text_projection"].t().contiguous()
    out["logit_scale"] = sd["logit_scale"].reshape(())
    out["vision_model.embeddings.class_embedding"] = sd["visual.class_embedding"]
    out["vision_model.embeddings.patch_embedding.weight"] = sd["visual.conv1.weight"]
    out["vision_model.embeddings.position_embedding.weight"] = sd["visual.positional_embedding"]
    for a, b in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        out[f"vision_model.{b}.weight"] = sd[f"visual.{a}.weight"]
        out[f"vision_model.{b}.bias"] = sd[f"visual.{a}.bias"]
    out["visual_projection.weight"] = sd["visual.proj"].t().contiguous()
    for src, dst in (("transformer.", "text_model.encoder."), ("visual.transformer.", "vision_model.encoder.")):
        for i in range(_layers(sd, src)):
            s, d = f"{src}resblocks.{i}.", f"{dst}layers.{i}."
            for kind in ("weight", "bias"):
                q, k, v = sd[f"{s}attn.in_proj_{kind}"].chunk(3, dim=0)
                out[f"{d}self_attn.q_proj.{kind}"] = q.contiguous()
                out[f"{d}self_attn.k_proj.{kind}"] = k.contiguous()
                out[f"{d}self_attn.v_proj.{kind}"] = v.contiguous()
                for a, b in _BLOCK.items():
                    out[f"{d}{b}.{kind}"] = sd[f"{s}{a}.{kind}"]
    return out


def hf_to_openai_state_dict(model) -> dict[str, torch.Tensor]:
    """The inverse mapping (a ``CLIPModel`` -> OpenAI-format tensors); used to test the converter."""
    hf = model.state_dict()
    sd: dict[str, torch.Tensor] = {
        "token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": hf["text_model.final_layer_norm.weight"],
        "ln_final.bias": hf["text_model.final_layer_norm.bias"],
        "text_projection": hf["text_projection.weight"].t().contiguous(),
        "logit_scale": hf["logit_scale"],
        "visual.class_embedding": hf["vision_model.embeddings.class_embedding"],
        "visual.conv1.weight": hf["vision_model.embeddings.patch_embedding.weight"],
        "visual.positional_embedding": hf["vision_model.embeddings.position_embedding.weight"],
        "visual.proj": hf["visual_projection.weight"].t().contiguous(),
    }
    for a, b in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        sd[f"visual.{a}.weight"] = hf[f"vision_model.{b}.weight"]
        sd[f"visual.{a}.bias"] = hf[f"vision_model.{b}.bias"]
    for src, dst, n in (("transformer.", "text_model.encoder.", model.config.text_config.num_hidden_layers),
                        ("visual.transformer.", "vision_model.encoder.", model.config.vision_config.num_hidden_layers)):
        for i in range(n):
            s, d = f"{src}resblocks.{i}.", f"{dst}layers.{i}."
            for kind in ("weight", "bias"):
                sd[f"{s}attn.in_proj_{kind}"] = torch.cat([hf[f"{d}self_attn.{p}_proj.{kind}"] for p in "qkv"], 0)
                for a, b in _BLOCK.items():
                    sd[f"{s}{a}.{kind}"] = hf[f"{d}{b}.{kind}"]
    return sd


def convert_longclip_checkpoint(checkpoint: str | Path, output: str | Path, processor_from: str | Path,
                                text_heads: int | None = None, vision_heads: int | None = None,
                                keep_positions: int = 20) -> Path:
    """Write a ``CLIPModel`` folder (weights + config + processor) for an OpenAI-format checkpoint.

    ``processor_from`` is a folder or hub id whose tokenizer and image processor match
    the checkpoint (same vocabulary and image size); the tokenizer's
    ``model_max_length`` is set to the checkpoint's text positions (248 for Long-CLIP).
    """
    from transformers import CLIPModel, CLIPProcessor

    sd = load_openai_state_dict(checkpoint)
    try:
        processor = CLIPProcessor.from_pretrained(str(processor_from))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load a CLIP processor from {processor_from!r}: {exc}".splitlines()[0]) from None
    tok = processor.tokenizer
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
           "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}
    config = config_from_state_dict(sd, text_heads, vision_heads, ids)
    if len(tok) > config.text_config.vocab_size:
        raise ConfigError(f"tokenizer of {processor_from!r} has {len(tok)} tokens, the checkpoint {config.text_config.vocab_size}")
    model = CLIPModel(config)
    missing, unexpected = model.load_state_dict(openai_to_hf_state_dict(sd, keep_positions), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise DataError(f"checkpoint does not match the inferred config (missing {missing[:3]}, unexpected {unexpected[:3]})",
                        checkpoint)
    out = Path(output)
    model.save_pretrained(out)
    tok.model_max_length = config.text_config.max_position_embeddings
    processor.save_pretrained(out)
    return out
