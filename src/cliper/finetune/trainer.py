"""Contrastive (symmetric InfoNCE) training of a CLIP model on a catalogue's (image, view text) pairs.

Starts from pretrained weights (``init``: a hub id or folder; domain adaptation) or from a small
config (``cliper.encoders.tiny``) with the byte-level tokenizer. Each epoch: one pass over the
training items, each paired with one of its view texts drawn at random; then held-out
image-to-text / text-to-image Recall@1/5 per evaluation view is logged (JSON lines), a
checkpoint is written, and the best one by held-out recall is kept as ``best/``.

Every random draw of an epoch comes from a generator seeded by (seed, epoch), so a run
resumed from a checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cliper import faults
from cliper.errors import ConfigError
from cliper.finetune import checkpoints as ckpt
from cliper.finetune.config import FinetuneConfig
from cliper.finetune.images import load_image_tensor, prepare_batch
from cliper.finetune.pairs import TrainingItem, build_training_items, held_out_mask
from cliper.finetune.retrieval import retrieval_metrics
from cliper.outputs import exclusive_output
from cliper.safeio import torch_load

log = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"
RUN_FILE = "finetune_config.json"
# Settings that may change when a run is resumed (everything else must match).
_RESUMABLE_CHANGES = {"epochs", "keep_checkpoints"}


@dataclass
class FinetuneResult:
    """Where the trained model lies and how well it retrieves on held-out items."""

    out_dir: Path
    best_dir: Path
    last_dir: Path
    log_path: Path
    best_epoch: int
    best_metrics: dict
    history: list[dict] = field(default_factory=list)
    n_train: int = 0
    n_held_out: int = 0
    skipped_no_image: int = 0
    resumed_from: int | None = None
    synthetic_data: bool = False


def _features(out) -> torch.Tensor:
    """Projected embedding from get_*_features (a tensor in transformers 4, a ModelOutput in 5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _is_synthetic(catalog: Path) -> bool:
    from cliper.demo import is_synthetic_catalog

    return is_synthetic_catalog(catalog)


def _load_model(init: str | None, cfg: FinetuneConfig, texts: list[str]):
    """Pretrained model + processor from ``init``, or a seeded small model with its own tokenizer."""
    if init is not None:
        return _load_folder(init)
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor

    from cliper.encoders.tiny import tiny_clip_config
    from cliper.encoders.tokenizer import BYTE_VOCAB_SIZE, save_byte_level_tokenizer
    from cliper.finetune.bpe import save_catalog_tokenizer

    config = tiny_clip_config(
        projection_dim=cfg.projection_dim, hidden_size=cfg.hidden_size, layers=cfg.layers,
        heads=cfg.heads, image_size=cfg.image_size, patch_size=cfg.patch_size,
        max_text_length=cfg.max_text_length,
    )
    with tempfile.TemporaryDirectory() as tmp:
        if cfg.tokenizer == "catalog":
            vocab_size = save_catalog_tokenizer(tmp, texts, cfg.bpe_merges, cfg.max_text_length)
        else:
            save_byte_level_tokenizer(tmp, max_length=cfg.max_text_length)
            vocab_size = BYTE_VOCAB_SIZE
        size = cfg.image_size
        CLIPImageProcessor(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        ).save_pretrained(tmp)
        processor = CLIPProcessor.from_pretrained(tmp)
    text = config.text_config
    text.vocab_size = vocab_size
    text.bos_token_id, text.eos_token_id, text.pad_token_id = vocab_size - 2, vocab_size - 1, vocab_size - 1
    torch.manual_seed(cfg.seed)
    return CLIPModel(config), processor


def _load_folder(source: str | Path, own_checkpoint: bool = False):
    """A CLIP model + processor; cliper's own checkpoints load only from safetensors (no pickle)."""
    from transformers import CLIPModel, CLIPProcessor

    extra = {"use_safetensors": True} if own_checkpoint else {}
    try:
        model = CLIPModel.from_pretrained(str(source), **extra)
        processor = CLIPProcessor.from_pretrained(str(source))
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"cannot load a CLIP model and processor from {source}: {first}") from None
    return model, processor


class _TextBank:
    """Token ids of every distinct text, computed once; batches are padded on demand."""

    def __init__(self, tokenizer, texts: list[str], max_length: int):
        self.index = {t: k for k, t in enumerate(dict.fromkeys(texts))}
        enc = tokenizer(list(self.index), truncation=True, max_length=max_length)
        self.ids = enc["input_ids"]
        pad = tokenizer.pad_token_id
        self.pad = pad if pad is not None else tokenizer.eos_token_id

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.ids[self.index[t]] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, r in enumerate(rows):
            ids[k, : len(r)] = torch.tensor(r)
            mask[k, : len(r)] = 1
        return ids, mask


def _contrastive_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, keys: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE; identical texts in a batch share the target mass (no false negatives)."""
    img = F.normalize(img, dim=-1)
    txt = F.normalize(txt, dim=-1)
    logits = scale * img @ txt.T
    _, group = np.unique(np.array(keys, dtype=object), return_inverse=True)
    g = torch.as_tensor(group)
    same = (g[:, None] == g[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


@torch.no_grad()
def _evaluate(model, images: torch.Tensor, items: list[TrainingItem], bank: _TextBank, cfg, mean, std) -> dict:
    model.eval()
    img = []
    for s in range(0, len(items), 256):
        x = prepare_batch(images[s : s + 256], mean, std, None)
        img.append(F.normalize(_features(model.get_image_features(pixel_values=x)), dim=-1))
    img_emb = torch.cat(img)
    out: dict[str, float] = {}
    for view in cfg.eval_views:
        texts = [it.texts[view] for it in items]
        emb = []
        for s in range(0, len(texts), 256):
            ids, mask = bank.batch(texts[s : s + 256])
            emb.append(F.normalize(_features(model.get_text_features(input_ids=ids, attention_mask=mask)), dim=-1))
        metrics = retrieval_metrics(img_emb, torch.cat(emb), texts)
        out.update({f"{view}_{k}": round(v, 6) for k, v in metrics.items() if k != "n"})
    model.train()
    return out


def _fingerprint(items: list[TrainingItem], held: np.ndarray) -> str:
    h = hashlib.sha256()
    for it, flag in zip(items, held):
        h.update(json.dumps([it.asin, bool(flag), it.texts], sort_keys=True).encode())
    return h.hexdigest()


def _read_log(path: Path, upto_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= upto_epoch]


def _scheduler(optimizer, cfg: FinetuneConfig, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = max(1, int(round(cfg.warmup_epochs * steps_per_epoch)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@contextmanager
def _torch_threads(n: int | None):
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def finetune_clip(
    catalog: str | Path,
    images: str | Path,
    out_dir: str | Path,
    *,
    init: str | None = None,
    config: FinetuneConfig | None = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> FinetuneResult:
    """Train CLIP contrastively on the catalogue's (image, view text) pairs; see the module doc.

    ``init``: hub id or folder of a pretrained CLIP (None: a small model from scratch).
    ``resume``: continue from the last checkpoint in ``out_dir`` (settings must match).
    ``overwrite``: delete a previous run in ``out_dir`` and start over (wins over ``resume``).
    """
    cfg = config or FinetuneConfig()
    threads = cfg.threads if cfg.threads is not None else (1 if init is None else None)
    with exclusive_output(out_dir), _torch_threads(threads):
        return _finetune(catalog, images, out_dir, init, cfg, resume, overwrite, progress)


def _finetune(catalog, images, out_dir, init, cfg: FinetuneConfig, resume, overwrite, progress) -> FinetuneResult:
    catalog, out_dir = Path(catalog), Path(out_dir)
    items, skipped = build_training_items(catalog, images, cfg.views, cfg.view_spec)
    missing_eval = [v for v in cfg.eval_views if v not in cfg.views]
    if missing_eval:
        raise ConfigError(f"eval views {missing_eval} must also be training views {list(cfg.views)}")
    held = held_out_mask([it.asin for it in items], cfg.held_out_fraction, cfg.seed)
    train_items = [it for it, h in zip(items, held) if not h]
    eval_items = [it for it, h in zip(items, held) if h]
    if len(train_items) < cfg.batch_size:
        raise ConfigError(f"{len(train_items)} training items is fewer than batch_size {cfg.batch_size}")
    synthetic = _is_synthetic(catalog)
    run_info = {
        "config": cfg.to_dict(), "init": init, "catalog": str(catalog), "images": str(images),
        "data_fingerprint": _fingerprint(items, held), "synthetic_data": synthetic,
    }

    existing = ckpt.list_checkpoints(out_dir)
    if existing and not resume and not overwrite:
        raise ConfigError(f"{out_dir} holds a previous run; resume it or pass overwrite (--force) to start over")
    if overwrite:
        for name in ("checkpoints", "best", LOG_FILE, RUN_FILE):
            p = out_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        existing = []
    resumed_from = None
    state = None
    if existing and resume:
        resumed_from, last = existing[-1]
        old = json.loads((out_dir / RUN_FILE).read_text(encoding="utf-8"))
        diffs = sorted(
            k for k in set(old["config"]) | set(run_info["config"])
            if k not in _RESUMABLE_CHANGES and old["config"].get(k) != run_info["config"].get(k)
        )
        if old.get("init") != init:
            diffs.append("init")
        if old.get("data_fingerprint") != run_info["data_fingerprint"]:
            diffs.append("catalogue content")
        if diffs:
            raise ConfigError(f"cannot resume {out_dir}: settings differ ({', '.join(diffs)}); "
                              "use a new output folder or pass overwrite (--force) to start over")
        state = torch_load(last / ckpt.STATE_FILE, "fine-tuning trainer state")
        model, processor = _load_folder(last, own_checkpoint=True)
        log.info("resuming %s from epoch %d", out_dir, resumed_from)
    else:
        model, processor = _load_model(init, cfg, [t for it in train_items for t in it.texts.values()])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUN_FILE).write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")

    size = model.config.vision_config.image_size
    mean = list(processor.image_processor.image_mean)
    std = list(processor.image_processor.image_std)
    image_bank = load_image_tensor([it.image_path for it in items], size)
    train_images = image_bank[torch.from_numpy(~held)]
    eval_images = image_bank[torch.from_numpy(held)]
    max_len = model.config.text_config.max_position_embeddings
    bank = _TextBank(processor.tokenizer, [t for it in items for t in it.texts.values()], max_len)

    lr = cfg.learning_rate(pretrained=init is not None)
    steps_per_epoch = len(train_items) // cfg.batch_size
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    scheduler = _scheduler(optimizer, cfg, steps_per_epoch)
    log_path = out_dir / LOG_FILE
    start_epoch, best_epoch, best_value, best_metrics = 0, 0, -1.0, {}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_epoch = state["epoch"], state["best_epoch"]
        best_value, best_metrics = state["best_value"], state["best_metrics"]
    # the log is rebuilt from the checkpoint (a kill between checkpoint and log row loses no row; a kill
    # before the first checkpoint leaves no stale row); older checkpoints without a history: the log file
    if state is None:
        history = []
    elif "history" in state:
        history = list(state["history"])
    else:
        history = _read_log(log_path, start_epoch)
    log_path.write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")

    def write_row(row: dict) -> None:
        history.append(row)
        with log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    if start_epoch == 0:
        base = _evaluate(model, eval_images, eval_items, bank, cfg, mean, std)
        write_row({"epoch": 0, "train_loss": None, "synthetic_data": synthetic, **base})
    if cfg.select_metric not in history[0]:
        raise ConfigError(f"select_metric {cfg.select_metric!r} is not a logged metric; "
                          f"choose from {sorted(k for k in history[0] if '_R@' in k)}")

    view_names = list(cfg.views)
    weights = torch.tensor([cfg.view_weights.get(v, 1.0) for v in view_names], dtype=torch.float)
    model.train()
    epochs = tqdm(range(start_epoch + 1, cfg.epochs + 1), desc="finetune", unit="epoch",
                  disable=not progress, initial=start_epoch, total=cfg.epochs)
    for epoch in epochs:
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(train_items), generator=gen)
        choice = torch.multinomial(weights.expand(len(train_items), -1), 1, generator=gen).squeeze(1)
        losses = []
        for b in tqdm(range(steps_per_epoch), desc=f"epoch {epoch}", leave=False, disable=not progress):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            texts = [train_items[i].texts[view_names[choice[i]]] for i in idx.tolist()]
            x = prepare_batch(train_images[idx], mean, std, gen if cfg.augment else None)
            ids, mask = bank.batch(texts)
            img = _features(model.get_image_features(pixel_values=x))
            txt = _features(model.get_text_features(input_ids=ids, attention_mask=mask))
            loss = _contrastive_loss(img, txt, model.logit_scale.exp(), texts)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, math.log(100.0))  # CLIP caps the temperature at 1/100
            losses.append(float(loss.detach()))
        metrics = _evaluate(model, eval_images, eval_items, bank, cfg, mean, std)
        row = {
            "epoch": epoch, "train_loss": round(float(np.mean(losses)), 6),
            "lr": optimizer.param_groups[0]["lr"], "logit_scale": round(float(model.logit_scale.detach().exp()), 4),
            "seconds": round(time.perf_counter() - t0, 3), "synthetic_data": synthetic, **metrics,
        }
        info = {**run_info, "epoch": epoch, "metrics": metrics}
        if metrics[cfg.select_metric] > best_value:
            best_value, best_epoch, best_metrics = metrics[cfg.select_metric], epoch, metrics
            ckpt.save_best(out_dir, model, processor, info)
            faults.kill_point("finetune.best")
        state = {
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
            "best_epoch": best_epoch, "best_value": best_value, "best_metrics": best_metrics,
            "history": [*history, row],
        }
        ckpt.save_checkpoint(out_dir, epoch, model, processor, state, info, cfg.keep_checkpoints)
        faults.kill_point("finetune.checkpoint")
        write_row(row)  # after the checkpoint: a logged epoch is always a saved epoch
        faults.kill_point("finetune.logged")
        epochs.set_postfix(loss=row["train_loss"], **{cfg.select_metric: metrics[cfg.select_metric]})

    done = ckpt.list_checkpoints(out_dir)
    if not done:
        raise ConfigError(f"no checkpoint was written to {out_dir}")
    return FinetuneResult(
        out_dir=out_dir, best_dir=out_dir / "best", last_dir=done[-1][1], log_path=log_path,
        best_epoch=best_epoch, best_metrics=best_metrics, history=history, n_train=len(train_items),
        n_held_out=len(eval_items), skipped_no_image=len(skipped), resumed_from=resumed_from,
        synthetic_data=synthetic,
    )
