"""``cliper extract`` (catalogue + images -> feature store), ``export-mmrec``, ``convert-longclip``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from cliper.cli import engine_opts

# This stage's commands; cliper.cli.main composes them into the one console script.
app = typer.Typer()



@app.command()
def extract(
    catalog: Path = typer.Option(..., "--catalog", help="Catalogue file: Amazon 2014 meta_*.json(.gz), Amazon 2023 meta_*.jsonl(.gz), or CSV/JSONL/Parquet."),
    output: Path = typer.Option(..., "--output", help="Feature-store folder to write (an unfinished one is resumed)."),
    encoder: str = typer.Option(..., "--encoder", help="CLIP hub id or local folder (Long-CLIP: a converted folder), or all-MiniLM-L6-v2 (text only)."),
    id_map: Optional[Path] = typer.Option(None, "--id-map", help="asin<TAB>itemID mapping (e.g. i_id_mapping.tsv). Without it records must carry itemID."),
    images: Optional[str] = typer.Option(None, "--images", help="Image folder (files named by itemID or ASIN), 'url' to download the catalogue's URLs, or 'none'."),
    image_cache: Optional[Path] = typer.Option(None, "--image-cache", help="Download cache for --images url (default OUTPUT/image_cache)."),
    fmt: str = typer.Option("auto", "--format", help="auto, amazon2014, amazon2023, jsonl, csv, parquet."),
    views: Optional[str] = typer.Option(None, "--views", help="Views: a preset (cliper, mmrec-text) or a YAML spec file. Default: the paper's five views."),
    fields: Optional[str] = typer.Option(None, "--fields", help="Quick views: comma-separated fields, each 'The product FIELD is {FIELD}.', plus a global view."),
    key_field: Optional[str] = typer.Option(None, "--key-field", help="Record field looked up in the id map (default asin / parent_asin)."),
    field_map: Optional[str] = typer.Option(None, "--field-map", help="Generic formats: 'title=name,brand=maker,...' (canonical=column)."),
    image_field: Optional[str] = typer.Option(None, "--image-field", help="Generic formats: column holding the image URL."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Texts/images per forward pass."),
    chunk_size: int = typer.Option(256, "--chunk-size", min=1, help="Items per resumable chunk."),
    device: str = typer.Option("auto", "--device", help="auto (GPU when present), cpu, cuda, cuda:1, mps."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (float16 on GPU, float32 on CPU), float32, float16, bfloat16."),
    long_text: str = typer.Option("truncate", "--long-text", help="truncate to the encoder's token limit, or window (average token windows)."),
    missing_image: str = typer.Option("global_text", "--missing-image", help="Fill for items without an image: global_text or zeros."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds per image download attempt."),
    retries: int = typer.Option(2, "--retries", min=0, help="Extra attempts per image download."),
    offline: bool = typer.Option(False, "--offline", help="Never touch the network for models (like HF_HUB_OFFLINE=1)."),
    export_mmrec: Optional[Path] = typer.Option(None, "--export-mmrec", help="Also write MMRec image_feat.npy / text_feat.npy here."),
    fusion: str = typer.Option("sa", "--fusion", help="Fusion for --export-mmrec text: sa, sum, mean, concat."),
    tau: float = typer.Option(0.1, "--tau", min=1e-6, help="Temperature for sa fusion."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = typer.Option(False, "--force", help="Replace a finished store in --output made with other inputs "
                               "or options (otherwise that is refused)."),
    engine: str = engine_opts.engine_option(),
    ray_address: Optional[str] = engine_opts.address_option(),
    workers: Optional[int] = engine_opts.workers_option(),
    cpus_per_worker: Optional[float] = engine_opts.cpus_option(),
    gpus_per_worker: Optional[float] = engine_opts.gpus_option(),
) -> None:
    """Extract multi-view CLIP features for every item into a feature store.

    Resumable: re-run the same command after an interruption; finished chunks are
    reused, and a run with unchanged texts and images recomputes nothing. With
    --engine ray the chunks are encoded by a pool of Ray actors (one model each, on its
    GPU with --gpus-per-worker 1) into the same store; OUTPUT must be on storage every
    Ray node sees.

    Example: cliper extract --catalog meta_Baby.json.gz --id-map i_id_mapping.tsv --images images/ --encoder openai/clip-vit-large-patch14 --output features/baby
    """
    import os

    from cliper.catalog.reader import parse_field_map
    from cliper.errors import ConfigError
    from cliper.features.extract import extract_features
    from cliper.views import load_view_set, view_set_from_fields

    if views and fields:
        raise ConfigError("give --views or --fields, not both")
    view_set = view_set_from_fields([f.strip() for f in fields.split(",") if f.strip()]) if fields else load_view_set(views)
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    eng = engine_opts.make_engine(engine, ray_address, workers, cpus_per_worker, gpus_per_worker)
    t0 = time.perf_counter()
    with eng:
        result = extract_features(
            catalog, output, encoder, id_map=id_map, images=images, image_cache=image_cache, views=view_set,
            catalog_format=fmt, key_field=key_field, field_map=parse_field_map(field_map), image_field=image_field,
            batch_size=batch_size, device=device, dtype=None if dtype == "auto" else dtype, long_text=long_text,
            chunk_size=chunk_size, missing_image=missing_image, download_timeout=timeout, download_retries=retries,
            progress=not quiet, force=force, engine=eng,
        )
    m = result.manifest
    elapsed = time.perf_counter() - t0
    typer.echo(f"items: {m['n_items']} ({m['catalog']['items']} in the catalogue, "
               f"{len(m['items_missing_from_catalog'])} missing from it)")
    typer.echo(f"views: {len(m['views']['names'])} ({', '.join(m['views']['names'])}), dim {m['dim']}, "
               f"encoder {m['encoder']['id']} (max {m['encoder']['max_text_length']} tokens, {m['encoder']['long_text']})")
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(m["images"]["missing_by_reason"].items())) or "none"
    typer.echo(f"images: {m['images']['n_real']} encoded, {m['images']['n_missing']} missing ({reasons}); "
               f"filled by {m['images']['missing_image_rule']}")
    typer.echo(f"skipped lines: {m['catalog']['skipped_lines']} malformed; "
               f"{m['catalog']['unmapped']} records not in the id map")
    from cliper.features.extract import coverage_line

    typer.echo(coverage_line(m.get("text_coverage")))
    w = m["work"]
    typer.echo(f"work: {w['chunks_computed']} chunks computed, {w['chunks_reused']} reused; "
               f"{w['texts_encoded']} texts and {w['images_encoded']} images encoded")
    typer.echo(f"time: {elapsed:.1f} s ({m['n_items'] / max(elapsed, 1e-9):.1f} items/s)")
    typer.echo(f"store: {output}")
    if eng.name != "local":
        typer.echo(f"engine: {eng.describe()}")
    if export_mmrec is not None:
        from cliper.features.export import export_mmrec as write_mmrec

        paths = write_mmrec(result.store, export_mmrec, method=fusion, tau=tau)
        typer.echo(f"mmrec: {paths['image_feat']} {paths['text_feat']}")


@app.command("export-mmrec")
def export_mmrec_cmd(
    store: Path = typer.Argument(..., help="Feature-store folder written by `cliper extract`."),
    output: Path = typer.Argument(..., help="Folder for image_feat.npy and text_feat.npy."),
    fusion: str = typer.Option("sa", "--fusion", help="sa, sum, mean or concat."),
    tau: float = typer.Option(0.1, "--tau", help="Temperature for sa fusion."),
    views: Optional[str] = typer.Option(None, "--views", help="Comma-separated subset of views to fuse (view ablation)."),
) -> None:
    """Write MMRec's image_feat.npy / text_feat.npy (text = fused views) from a feature store.

    Example: cliper export-mmrec features/baby mmrec/baby --fusion sa --tau 0.1
    """
    from cliper.features.export import export_mmrec

    chosen = [v.strip() for v in views.split(",") if v.strip()] if views else None
    paths = export_mmrec(store, output, method=fusion, tau=tau, views=chosen)
    typer.echo(f"wrote {paths['image_feat']} and {paths['text_feat']}")


@app.command("convert-longclip")
def convert_longclip_cmd(
    checkpoint: Path = typer.Argument(..., help="Long-CLIP (or OpenAI CLIP) .pt state dict, e.g. longclip-L.pt."),
    output: Path = typer.Argument(..., help="Hugging Face folder to write (CLIPModel + processor)."),
    processor_from: str = typer.Option(..., "--processor-from", help="Folder or hub id whose tokenizer/image processor to copy, e.g. openai/clip-vit-large-patch14."),
) -> None:
    """Convert an original Long-CLIP checkpoint into a CLIPModel folder `cliper extract` loads.

    Example: cliper convert-longclip longclip-L.pt encoders/longclip-L --processor-from openai/clip-vit-large-patch14
    """
    from cliper.encoders.longclip import convert_longclip_checkpoint

    out = convert_longclip_checkpoint(checkpoint, output, processor_from=processor_from)
    typer.echo(f"wrote {out}")
