"""Inputs and runners shared by the safety tests: a tiny .inter with feature files, the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from cliper.testing import tiny_dataset, write_inter
from cliper.testing.kill import killed_in_child  # noqa: F401  (re-exported for the safety tests)

CLI = [sys.executable, "-c", "from cliper.cli.main import main; main()"]


def write_inputs(root: Path, n_users: int = 40, n_items: int = 30, seed: int = 2) -> dict[str, Path]:
    """``t.inter`` plus MMRec-style ``image_feat.npy`` / ``text_feat.npy`` (seeded)."""
    root.mkdir(parents=True, exist_ok=True)
    inter = write_inter(tiny_dataset(n_users=n_users, n_items=n_items, per_user=8, seed=seed), root / "t.inter")
    rng = np.random.default_rng(seed)
    image, text = root / "image_feat.npy", root / "text_feat.npy"
    np.save(image, rng.standard_normal((n_items, 12)).astype(np.float32))
    np.save(text, rng.standard_normal((n_items, 10)).astype(np.float32))
    return {"inter": inter, "image": image, "text": text}


def train_overrides(inputs: dict[str, Path], model: str, epochs: int = 4, features: bool = True) -> list[str]:
    """The ``-o`` overrides of a tiny run (also what ``load_config`` gets in-process)."""
    from cliper.models.registry import get_model_class

    out = [f"train.epochs={epochs}", "train.patience=100", "train.batch_size=64", "model.embedding_dim=16",
           "eval.topk=[5,10]", "eval.valid_metric=recall@10"]
    if "feat_embed_dim" in get_model_class(model).Params.model_fields:
        out.append("model.feat_embed_dim=16")
    if features:
        out += [f"features.image={inputs['image']}", f"features.text={inputs['text']}"]
    return out


def config(inputs: dict[str, Path], model: str, **kw):
    from cliper.config.loader import load_config

    return load_config(overrides=[f"dataset.path={inputs['inter']}", f"model.name={model}",
                                  *train_overrides(inputs, model, **kw)])


def cli_train(inputs: dict[str, Path], model: str, out: Path, *extra: str, env: dict | None = None, **kw):
    args = [*CLI, "train", "--dataset", str(inputs["inter"]), "--model", model, "--output", str(out), "-q"]
    for o in train_overrides(inputs, model, **kw):
        args += ["-o", o]
    return subprocess.run([*args, *extra], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=300)


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=timeout)


def epochs_log(run: Path) -> list[dict]:
    """``epochs.jsonl`` without its wall-clock fields."""
    rows = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders hold exactly the same result: metrics, epoch log, best weights, per-user scores."""
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for key in ("best_epoch", "valid", "test", "epochs_run", "stopped_early"):
        assert ma[key] == mb[key], key
    assert epochs_log(a) == epochs_log(b)
    wa, wb = (torch.load(d / "best.pt", weights_only=True) for d in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    with np.load(a / "test_per_user.npz") as za, np.load(b / "test_per_user.npz") as zb:
        assert za.files == zb.files and all(np.array_equal(za[k], zb[k]) for k in za.files)


class Payload:
    """Unpickling this object creates ``marker``: proof that a loader ran code from a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))
