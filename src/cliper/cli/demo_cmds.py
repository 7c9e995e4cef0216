"""``cliper demo-data`` (synthetic catalogue) and ``cliper finetune`` (contrastive CLIP training)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

# This stage's commands; cliper.cli.main composes them into the one console script.
app = typer.Typer()



@app.command("demo-data")
def demo_data(
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write the synthetic catalogue into."),
    items: int = typer.Option(800, "--items", help="Number of products."),
    users: int = typer.Option(1200, "--users", help="Number of simulated users."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed: byte-identical files)."),
    mean_interactions: float = typer.Option(18.0, "--mean-interactions", help="Mean interactions per user."),
    image_size: int = typer.Option(64, "--image-size", help="Side of the square product pictures, pixels."),
    force: bool = typer.Option(False, "--force", help="Replace a catalogue already in --output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Quiet: no progress bars, warnings and errors only."),
) -> None:
    """Generate a SYNTHETIC demo catalogue (metadata JSONL, images, MMRec .inter split, id maps).

    Example: cliper demo-data --output demo --items 800 --users 1200
    """
    from cliper.demo import generate_demo_catalog

    cat = generate_demo_catalog(
        output, n_items=items, n_users=users, seed=seed, mean_interactions=mean_interactions,
        image_size=image_size, overwrite=force, progress=not quiet,
    )
    s = cat.stats
    typer.echo(
        f"wrote SYNTHETIC catalogue to {cat.root}: {s['items']} items ({s['items_without_image']} without image), "
        f"{s['users']} users, {s['interactions']} interactions "
        f"(train {s['train']} / valid {s['valid']} / test {s['test']})"
    )
    typer.echo(f"  metadata {cat.meta}\n  images   {cat.images}\n  split    {cat.inter}")


@app.command("finetune")
def finetune(
    catalog: Path = typer.Option(..., "--catalog", help="Item metadata JSONL (Amazon-2014 schema)."),
    images: Path = typer.Option(..., "--images", help="Folder of <ASIN>.jpg/.png product images."),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder: checkpoints/, best/, log.jsonl."),
    init: Optional[str] = typer.Option(
        None, "--init", help="Pretrained CLIP (hub id or folder) to adapt; omit to train a small model from scratch."
    ),
    epochs: int = typer.Option(20, "--epochs"),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Default: 1e-3 from scratch, 1e-5 from --init."),
    seed: int = typer.Option(0, "--seed"),
    held_out: float = typer.Option(0.15, "--held-out", help="Fraction of items held out for retrieval metrics."),
    views: str = typer.Option("title,brand,categories,global", "--views", help="Comma-separated views paired with images."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Disable image augmentation."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Do not continue from the last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Delete a previous run in --output and start over."),
) -> None:
    """Contrastive (symmetric InfoNCE) CLIP training on the catalogue's (image, view text) pairs.

    Example: cliper finetune --catalog demo/meta_demo.jsonl --images demo/images --output clip-demo --epochs 20
    """
    from cliper.finetune import FinetuneConfig, finetune_clip

    view_list = tuple(v.strip() for v in views.split(",") if v.strip())
    defaults = FinetuneConfig()
    cfg = FinetuneConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, held_out_fraction=held_out,
        views=view_list, eval_views=tuple(v for v in defaults.eval_views if v in view_list) or view_list[:1],
        select_metric=defaults.select_metric if "title" in view_list else f"{view_list[0]}_i2t_R@5",
        augment=not no_augment,
    )
    res = finetune_clip(catalog, images, output, init=init, config=cfg, resume=not no_resume, overwrite=force)
    tag = " [SYNTHETIC data]" if res.synthetic_data else ""
    typer.echo(f"trained on {res.n_train} items, held out {res.n_held_out} "
               f"({res.skipped_no_image} skipped: no image){tag}")
    typer.echo(f"best epoch {res.best_epoch}: {json.dumps(res.best_metrics)}")
    typer.echo(f"best model: {res.best_dir}   log: {res.log_path}")
