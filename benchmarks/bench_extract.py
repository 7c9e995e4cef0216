"""Benchmark feature extraction on a ViT-B/32-shaped CLIP (random weights, built from a config).

Three timings over the same items (the real 97-item Amazon Baby sample, cycled,
with generated 256x256 JPEG images; synthetic text when the sample is absent):

1. pipeline  -- ``extract_features`` end to end: read catalogue, build views,
   tokenise, sort by length and batch, decode/preprocess images, encode, write
   chunks and the store (fresh output folder, nothing cached);
2. forward   -- the pure model time: wall time spent inside the model's forward
   calls during that same pipeline run (``manifest["work"]["forward_s"]``); with
   ``--bare`` also re-timed as bare forwards of the same batches, prepared outside the clock;
3. loop      -- one item at a time, one sentence per forward, padded to the full
   context (like the released code: clip.tokenize pads to 77), one image per forward;
   timed on the first ``--loop-items`` items (its per-item cost does not depend on N).

Prints items/s, ``loop / pipeline`` (target >= 5) and the pipeline overhead
``(pipeline - forward) / forward`` (target < 15%). Weights are random, so the
figures measure speed only. Text is tokenised with the project's byte-level
tokenizer (one token per byte), which makes views longer than CLIP's BPE would.

    python benchmarks/bench_extract.py               # 64 items, loop on 16
    python benchmarks/bench_extract.py --items 16 --loop-items 16 --check --bare

Writes benchmarks/results/extract.json (``python benchmarks/render.py`` renders it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def build_encoder(folder: Path, max_positions: int, batch_size: int):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from cliper.encoders.clip import ClipEncoder
    from cliper.encoders.tokenizer import BYTE_VOCAB_SIZE, save_byte_level_tokenizer

    text = dict(vocab_size=BYTE_VOCAB_SIZE, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                num_attention_heads=8, max_position_embeddings=max_positions, bos_token_id=BYTE_VOCAB_SIZE - 2,
                eos_token_id=BYTE_VOCAB_SIZE - 1, pad_token_id=BYTE_VOCAB_SIZE - 1)
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  image_size=224, patch_size=32)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)).eval()
    save_byte_level_tokenizer(folder, max_length=max_positions)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    return ClipEncoder(model, tokenizer, processor, name="bench-vit-b32-random", device=torch.device("cpu"),
                       batch_size=batch_size)


def make_inputs(root: Path, n: int) -> tuple[Path, Path, str]:
    from cliper.paths import shared_dataset

    d = shared_dataset("amazon-baby")
    rows = []
    if d is not None and (d / "meta_sample.jsonl").is_file():
        base = [json.loads(x) for x in (d / "meta_sample.jsonl").read_text(encoding="utf-8").splitlines()]
        source = "real 97-item Amazon Baby sample (cycled)"
    else:
        base = [{"title": f"Product {i}", "brand": None, "categories": [["Baby"]], "description": "A thing. " * 30} for i in range(97)]
        source = "synthetic text"
    for i in range(n):
        r = dict(base[i % len(base)])
        r["itemID"], r["asin"] = i, f"BENCH{i:06d}"
        rows.append(r)
    catalog = root / "meta.jsonl"
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(images / f"{i}.jpg", quality=85)
    return catalog, images, source


def time_forward_only(enc, texts: list[str], images: list[Image.Image], batch_size: int) -> float:
    _, batches = enc.text_batches(texts, batch_size)
    pixels = [enc.preprocess_images(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]
    t = time.perf_counter()
    for _, ids, mask in batches:
        enc.forward_text_batch(ids, mask)
    for px in pixels:
        enc.encode_pixels(px)
    return time.perf_counter() - t


@torch.no_grad()
def run_loop(enc, catalog: Path, images: Path, max_positions: int, n: int) -> tuple[float, np.ndarray, np.ndarray]:
    """One item, one sentence per forward, padded to the full context; one image per forward."""
    from cliper.views import PAPER_VIEWS, build_views

    t = time.perf_counter()
    views, imgs = [], []
    for line in catalog.read_text(encoding="utf-8").splitlines()[:n]:
        rec = json.loads(line)
        row = []
        for text in build_views(rec, PAPER_VIEWS):
            tok = enc.tokenizer([text], padding="max_length", max_length=max_positions, truncation=True, return_tensors="pt")
            out = enc.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
            e = (out if isinstance(out, torch.Tensor) else out.pooler_output)[0].numpy()
            row.append(e / np.linalg.norm(e))
        views.append(row)
        im = Image.open(images / f"{rec['itemID']}.jpg").convert("RGB")
        px = enc.image_processor(images=[im], return_tensors="pt")["pixel_values"]
        out = enc.model.get_image_features(pixel_values=px)
        e = (out if isinstance(out, torch.Tensor) else out.pooler_output)[0].numpy()
        imgs.append(e / np.linalg.norm(e))
    return time.perf_counter() - t, np.array(views).transpose(1, 0, 2), np.array(imgs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-positions", type=int, default=77, help="text positions (248 = Long-CLIP-shaped)")
    ap.add_argument("--loop-items", type=int, default=16, help="items timed in the one-at-a-time loop")
    ap.add_argument("--bare", action="store_true", help="also re-time bare forwards of the pipeline's batches")
    ap.add_argument("--check", action="store_true", help="also assert loop and pipeline embeddings agree")
    args = ap.parse_args()

    from results_io import write_result

    from cliper.features.extract import extract_features
    from cliper.images import decode_image

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        enc = build_encoder(root / "tok", args.max_positions, args.batch_size)
        catalog, images, source = make_inputs(root, args.items)
        print(f"model: ViT-B/32-shaped CLIP, random weights, {sum(p.numel() for p in enc.model.parameters()) / 1e6:.0f}M params, "
              f"{args.max_positions} text positions; torch threads {torch.get_num_threads()}; items: {args.items} ({source})")

        # warm-up (first-call allocations), not timed
        enc.encode_texts(["warm up"]), enc.encode_images([Image.new("RGB", (224, 224))])

        t = time.perf_counter()
        res = extract_features(catalog, root / "store", enc, images=images, batch_size=args.batch_size,
                               chunk_size=max(256, args.batch_size), progress=False)
        t_pipe = time.perf_counter() - t
        w = res.manifest["work"]

        t_fwd = w["forward_s"]
        n, nl = args.items, min(args.loop_items, args.items)
        t_loop, loop_views, loop_imgs = run_loop(enc, catalog, images, args.max_positions, nl)

        print(f"pipeline: {t_pipe:7.2f} s  {n / t_pipe:6.2f} items/s  ({w['texts_encoded']} unique texts in "
              f"{w['text_forwards']} forwards, {w['images_encoded']} images in {w['image_forwards']} forwards)")
        print(f"forward : {t_fwd:7.2f} s  (model forwards inside that run)")
        if args.bare:
            from cliper.catalog import read_catalog
            from cliper.views import PAPER_VIEWS, build_views

            cat = read_catalog(catalog)
            texts = list(dict.fromkeys(s for i in sorted(cat.items) for s in build_views(cat.items[i].fields, PAPER_VIEWS)))
            ims = [decode_image((images / f"{i}.jpg").read_bytes()) for i in range(n)]
            t_bare = time_forward_only(enc, texts, ims, args.batch_size)
            print(f"bare    : {t_bare:7.2f} s  (same batches re-run alone; overhead vs bare "
                  f"{100 * (t_pipe - t_bare) / t_bare:.1f}%)")
        print(f"loop    : {t_loop:7.2f} s  {nl / t_loop:6.2f} items/s  ({5 * nl} text + {nl} image forwards, first {nl} items)")
        print(f"speed-up batched vs loop (items/s): {(n / t_pipe) / (nl / t_loop):.2f}x (target >= 5x)")
        print(f"pipeline overhead vs model forward: {100 * (t_pipe - t_fwd) / t_fwd:.1f}% (target < 15%)")
        print(f"stage times (s): {json.dumps(res.manifest['timings_s'])}")
        row = {"items": n, "text positions": args.max_positions, "pipeline s": round(t_pipe, 2),
               "pipeline items/s": round(n / t_pipe, 3), "forward s (same run)": round(t_fwd, 2),
               "loop s": round(t_loop, 2), "loop items": nl, "loop items/s": round(nl / t_loop, 3),
               "batched vs loop": round((n / t_pipe) / (nl / t_loop), 1),
               "overhead vs forward %": round(100 * (t_pipe - t_fwd) / t_fwd, 1)}
        if args.bare:
            row["bare forward s"] = round(t_bare, 2)
        if args.check:
            s = res.store
            dv = np.abs(np.asarray(s.views)[:, :nl] - loop_views).max()
            di = np.abs(np.asarray(s.image)[:nl] - loop_imgs).max()
            print(f"max |pipeline - loop|: views {dv:.2e}, image {di:.2e}")
            assert dv < 1e-3 and di < 1e-3
            row["max |pipeline - loop|"] = float(f"{max(dv, di):.1e}")
        columns = list(row)
        write_result("extract", columns, [row], notes=(
            f"ViT-B/32-shaped CLIP with random weights ({sum(p.numel() for p in enc.model.parameters()) / 1e6:.0f}M "
            f"parameters), batch {args.batch_size}, items from {source} with generated 256x256 JPEGs. pipeline = "
            "extract_features end to end in a fresh folder; forward = time inside the model's forward calls in that "
            "run; loop = one sentence (padded to the full context) and one image per forward, like the released "
            "code, timed on the first loop items. Targets: batched vs loop >= 5x, overhead < 15 %. Random weights "
            "and a byte-level tokenizer (longer views than CLIP's BPE): speed figures only."))


if __name__ == "__main__":
    main()
