"""Checkpoint folders: ``save_pretrained`` model + processor (what the extractor loads), plus
the optimiser state needed to resume. Each is written to a temporary folder and renamed, so a
crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch

STATE_FILE = "trainer_state.pt"
INFO_FILE = "training_info.json"
_EPOCH_DIR = re.compile(r"^epoch-(\d{4})$")


def checkpoint_dir(out_dir: Path, epoch: int) -> Path:
    return out_dir / "checkpoints" / f"epoch-{epoch:04d}"


def list_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those holding a trainer state), oldest first."""
    root = out_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _EPOCH_DIR.match(p.name)
        if m and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _write_model_folder(folder: Path, model, processor, info: dict) -> None:
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one "Writing model shards" bar per save would drown the epoch bar
    try:
        model.save_pretrained(folder)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    processor.save_pretrained(folder)
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)


def save_checkpoint(out_dir: Path, epoch: int, model, processor, state: dict, info: dict, keep: int) -> Path:
    final = checkpoint_dir(out_dir, epoch)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    _write_model_folder(tmp, model, processor, info)
    torch.save(state, tmp / STATE_FILE)
    _replace_dir(tmp, final)
    for _, old in list_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def save_best(out_dir: Path, model, processor, info: dict) -> Path:
    final = out_dir / "best"
    tmp = out_dir / "best.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    _write_model_folder(tmp, model, processor, info)
    _replace_dir(tmp, final)
    return final
