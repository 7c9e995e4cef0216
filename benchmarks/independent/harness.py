"""Side-by-side runs: a cliper backbone and an independent implementation on identical inputs.

The independent side shares nothing with cliper's models, trainer, sampler or evaluator:
it gets the split and the feature arrays as plain NumPy (the only cliper code it runs is the
``.inter`` reader, so both sides see the same rows), and trains with a loop written to the
reference toolbox's (MMRec's) documented semantics:

- every epoch: ``model.pre_epoch()``, then the train pairs in a fresh random order, batches of
  2048, one negative per pair drawn uniformly from the items seen in training and redrawn
  while it is one of the user's train items;
- Adam, learning rate 1e-3, no weight decay, a constant learning rate (MMRec's default
  scheduler factor is 1.0) unless the model has ``lr_lambda(epoch)`` (its YAML's
  ``learning_rate_scheduler``, run as MMRec's per-epoch ``LambdaLR``);
- full ranking after every epoch: the user's train items are masked, Recall@20 = hits / |truth|,
  NDCG@20 with the ideal DCG over min(|truth|, 20) positions, averaged over the users that have
  truth in the split;
- early stopping as MMRec: the valid Recall@20 rounded to 4 decimals must be strictly greater
  than the best so far; the run stops when 21 evaluations in a row were not (its
  ``stopping_step: 20`` stops once the count exceeds 20); the reported test figures are the
  best valid epoch's.

The cliper side is ``cliper train``'s own path (packaged YAML defaults, ``Trainer``,
``Evaluator``) fed the very same feature arrays through ``features.image`` / ``features.text``.

An independent model is a ``torch.nn.Module`` with::

    __init__(inputs: Inputs, seed: int)       # builds its graphs from inputs.train / features
    pre_epoch(self) -> None                   # e.g. edge pruning, graph refresh
    loss(self, users, pos, neg) -> Tensor     # LongTensors [B]
    scores(self, users) -> Tensor             # [len(users), n_items], called under no_grad, eval()

Features: ``svd`` (default) derives item features from the TRAIN matrix only (a truncated SVD's
item factors through a random linear map, plus noise), so the kNN graphs and feature paths carry
signal without touching valid/test; ``random`` is seeded standard-normal noise (the benchmarks'
features). Either way the figures are plumbing and fidelity checks, not results of a method.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch


@dataclasses.dataclass
class Inputs:
    """What both sides see: the split (CSR, users x items) and the item feature arrays."""

    n_users: int
    n_items: int
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    image: np.ndarray | None
    text: np.ndarray | None
    name: str = "dataset"

    def modalities(self) -> dict[str, np.ndarray]:
        return {m: x for m, x in (("image", self.image), ("text", self.text)) if x is not None}


def _split_matrix(data, name: str) -> sp.csr_matrix:
    s = data.split(name)
    m = sp.csr_matrix((np.ones(len(s.users), dtype=np.float32), (s.users, s.items)),
                      shape=(data.n_users, data.n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def svd_features(train: sp.csr_matrix, dim: int, rank: int, noise: float, seed: int) -> np.ndarray:
    """Item features that carry collaborative signal: SVD item factors of the train matrix,
    mapped to ``dim`` by a seeded random matrix, plus ``noise`` times standard normal."""
    rng = np.random.default_rng(seed)
    from scipy.sparse.linalg import svds

    _, s, vt = svds(train.astype(np.float64), k=rank, random_state=seed)
    factors = (vt.T * np.sqrt(s)).astype(np.float32)  # [n_items, rank]
    factors /= np.linalg.norm(factors, axis=1, keepdims=True).mean() + 1e-12
    x = factors @ rng.standard_normal((rank, dim), dtype=np.float32) / math.sqrt(rank)
    x += noise * rng.standard_normal(x.shape, dtype=np.float32)
    return x.astype(np.float32)


def load_inputs(dataset: str | Path, features: str = "svd", image_dim: int = 4096, text_dim: int = 384,
                seed: int = 0, rank: int = 32, noise: float = 1.0) -> Inputs:
    from cliper.data.interactions import load_inter
    from cliper.training.runner import find_inter

    inter = find_inter(Path(dataset))
    data = load_inter(inter, name=inter.stem)
    train = _split_matrix(data, "train")
    if features == "svd":
        image = svd_features(train, image_dim, rank, noise, seed + 1) if image_dim else None
        text = svd_features(train, text_dim, rank, noise, seed + 2) if text_dim else None
    elif features == "random":
        rng = np.random.default_rng(seed)
        image = rng.standard_normal((data.n_items, image_dim), dtype=np.float32) if image_dim else None
        text = rng.standard_normal((data.n_items, text_dim), dtype=np.float32) if text_dim else None
    else:
        raise ValueError(f"features must be 'svd' or 'random', not {features!r}")
    return Inputs(data.n_users, data.n_items, train, _split_matrix(data, "valid"), _split_matrix(data, "test"),
                  image, text, name=inter.stem)


# -- the independent loop -------------------------------------------------------------
def ranking_metrics(scores: np.ndarray, train_rows: sp.csr_matrix, truth_rows: sp.csr_matrix,
                    k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Per-user Recall@k and NDCG@k of a score block (train items masked)."""
    scores = scores.copy()
    r, c = train_rows.nonzero()
    scores[r, c] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, 1)
    hits = np.asarray(truth_rows[np.arange(top.shape[0])[:, None], top].todense()) > 0
    n_truth = np.diff(truth_rows.indptr)
    recall = hits.sum(1) / n_truth
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(1)
    idcg = np.array([discounts[: min(int(n), k)].sum() for n in n_truth])
    return recall, dcg / idcg


@torch.no_grad()
def evaluate(model, inputs: Inputs, split: str, k: int = 20, chunk: int = 2048) -> dict[str, float]:
    truth = getattr(inputs, split)
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    model.eval()
    rec, ndcg = [], []
    for s in range(0, users.size, chunk):
        u = users[s: s + chunk]
        sc = model.scores(torch.from_numpy(u)).float().cpu().numpy()
        r, n = ranking_metrics(sc, inputs.train[u], truth[u], k)
        rec.append(r)
        ndcg.append(n)
    model.train()
    return {f"recall@{k}": float(np.concatenate(rec).mean()), f"ndcg@{k}": float(np.concatenate(ndcg).mean())}


class ReferenceSampler:
    """Shuffled train pairs with one negative each, drawn from the items seen in training."""

    def __init__(self, train: sp.csr_matrix, rng: np.random.Generator):
        coo = train.tocoo()
        self.users, self.items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        self.candidates = np.unique(self.items)
        self.keys = np.sort(self.users * train.shape[1] + self.items)
        self.n_items = train.shape[1]
        self.rng = rng

    def _is_train(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        key = u * self.n_items + i
        pos = np.minimum(np.searchsorted(self.keys, key), self.keys.size - 1)
        return self.keys[pos] == key

    def epoch(self, batch_size: int):
        order = self.rng.permutation(self.users.size)
        for s in range(0, order.size, batch_size):
            idx = order[s: s + batch_size]
            u, p = self.users[idx], self.items[idx]
            n = self.candidates[self.rng.integers(0, self.candidates.size, u.size)]
            bad = np.flatnonzero(self._is_train(u, n))
            while bad.size:
                n[bad] = self.candidates[self.rng.integers(0, self.candidates.size, bad.size)]
                bad = bad[self._is_train(u[bad], n[bad])]
            yield torch.from_numpy(u), torch.from_numpy(p), torch.from_numpy(n)


def reference_stop(curve: list[float], patience: int = 21, decimals: int = 4) -> tuple[int, int]:
    """(best epoch index, epochs run) under MMRec's rule applied to a valid curve."""
    best, best_i, bad = -math.inf, -1, 0
    for i, v in enumerate(curve):
        v = round(v, decimals)
        if v > best:
            best, best_i, bad = v, i, 0
        else:
            bad += 1
            if bad >= patience:
                return best_i, i + 1
    return best_i, len(curve)


def reference_setup(model_cls, inputs: Inputs, seed: int, params: dict | None = None, lr: float = 1e-3):
    """(model, optimiser, scheduler or None, sampler) as the reference trainer builds them: seeded, Adam
    over the trainable parameters, no weight decay."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = model_cls(inputs, seed, **(params or {}))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    # a model may carry MMRec's learning_rate_scheduler as ``lr_lambda(epoch)`` (LambdaLR, stepped per epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, model.lr_lambda) if hasattr(model, "lr_lambda") else None
    return model, opt, sched, ReferenceSampler(inputs.train, np.random.default_rng(seed))


def train_epoch(model, opt, sched, sampler: ReferenceSampler, batch_size: int = 2048) -> torch.Tensor:
    """One epoch of the reference loop (``pre_epoch``, then every batch); the last batch's loss."""
    model.train()
    model.pre_epoch()
    for u, p, n in sampler.epoch(batch_size):
        opt.zero_grad()
        loss = model.loss(u, p, n)
        loss.backward()
        opt.step()
    if sched is not None:
        sched.step()
    return loss


def fit_independent(model_cls, inputs: Inputs, seed: int, epochs: int, params: dict | None = None,
                    batch_size: int = 2048, lr: float = 1e-3, patience: int = 21, log=None) -> dict:
    model, opt, sched, sampler = reference_setup(model_cls, inputs, seed, params, lr)
    valid, test, seconds = [], [], []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        loss = train_epoch(model, opt, sched, sampler, batch_size)
        seconds.append(time.perf_counter() - t0)
        v, t = evaluate(model, inputs, "valid"), evaluate(model, inputs, "test")
        valid.append(v)
        test.append(t)
        if log:
            log(f"  independent seed {seed} epoch {epoch}: valid R@20 {v['recall@20']:.4f} loss {float(loss.detach()):.4f}")
        best_i, _ = reference_stop([x["recall@20"] for x in valid], patience)
        if len(valid) - 1 - best_i >= patience:  # this evaluation was the patience-th without a gain
            break
    return _summary(valid, test, seconds, patience)


def _summary(valid: list[dict], test: list[dict | None], seconds: list[float], patience: int) -> dict:
    curve = [v["recall@20"] for v in valid]
    best_i, run = reference_stop(curve, patience)
    return {"valid_curve": [round(x, 5) for x in curve], "best_epoch": best_i + 1, "epochs_run": run,
            "stopped_early": run < len(curve) or (run == len(curve) and len(curve) - 1 - best_i >= patience),
            "valid": valid[best_i], "test": test[best_i], "s_per_epoch": round(float(np.mean(seconds)), 3)}


# -- the cliper side -------------------------------------------------------------------
def feature_overrides(inputs: Inputs, workdir: Path) -> list[str]:
    """The feature arrays as ``.npy`` files under ``workdir`` (written once) and the cliper
    overrides that load them: how every cliper-side run sees exactly the independent side's arrays."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    feats = []
    for m, x in inputs.modalities().items():
        path = workdir / f"{m}.npy"
        if not path.exists():
            np.save(path, x)
        feats.append(f"features.{m}={path}")
    return feats


class CliperScores:
    """:func:`evaluate`'s interface over a cliper model (for the lockstep diagnostics)."""

    def __init__(self, model):
        self.model = model

    def eval(self):
        self.model.eval()

    def train(self):
        self.model.train()

    def scores(self, users):
        return self.model.full_sort_predict(users)


def lockstep_epoch(trainer, model, opt, inputs: Inputs, epoch: int) -> tuple[float, float]:
    """One epoch of cliper's Trainer and, on the very same batches (``trainer.batches(epoch)`` is
    deterministic per epoch), of the independent ``model`` under ``opt``; the two valid R@20."""
    batches = [(b.users, b.pos_items, b.neg_items) for b in trainer.batches(epoch)]
    trainer.train_epoch(epoch)
    model.train()
    model.pre_epoch()
    for u, p, n in batches:
        opt.zero_grad()
        model.loss(u, p, n).backward()
        opt.step()
    return (evaluate(CliperScores(trainer.model), inputs, "valid")["recall@20"],
            evaluate(model, inputs, "valid")["recall@20"])


def fit_cliper(model_name: str, dataset: str | Path, inputs: Inputs, seed: int, epochs: int, workdir: Path,
               overrides: list[str] = (), patience: int = 21) -> dict:
    """``cliper train``'s path on the same arrays: packaged defaults, Trainer, Evaluator."""
    from cliper.config.loader import load_config
    from cliper.runtime import set_threads
    from cliper.training.runner import build_features, build_model, load_dataset, make_evaluator
    from cliper.training.trainer import Trainer

    feats = feature_overrides(inputs, workdir)
    cfg = load_config(overrides=[f"dataset.path={dataset}", f"model.name={model_name}", f"train.epochs={epochs}",
                                 f"train.patience={patience}", f"seed={seed}", "train.checkpoint=false",
                                 "eval.topk=[20]", "eval.metrics=[recall,ndcg]", *feats, *overrides])
    set_threads(cfg.threads)
    data = load_dataset(cfg)
    device = torch.device("cpu")
    model = build_model(cfg, data, build_features(cfg, data.n_items), device)
    trainer = Trainer(model, data, make_evaluator(cfg, data, device), cfg.train, cfg.eval.valid_metric, cfg.seed,
                      None, progress=False, device=device)
    res = trainer.fit()
    valid = [r["valid"] for r in res.history if "valid" in r]
    seconds = [r["train_seconds"] for r in res.history]
    out = _summary(valid, [None] * len(valid), seconds, patience)
    out["test"] = res.test  # the trainer's own test pass at its best epoch
    out["best_epoch_trainer"] = res.best_epoch
    return out


def mean_se(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else 0.0


def compare(rows: list[dict], metric: str = "recall@20") -> dict:
    """Mean +- standard error of the test metric at each side's early-stopping epoch, and the gap."""
    out = {}
    for side in ("cliper", "independent"):
        vals = [r[side]["test"][metric] for r in rows]
        out[side] = mean_se(vals)
    (a, sa), (b, sb) = out["cliper"], out["independent"]
    se = math.sqrt(sa ** 2 + sb ** 2)
    out["difference"] = a - b
    out["relative"] = (a - b) / b if b else float("nan")
    out["within_2se"] = abs(a - b) <= 2 * se if se > 0 else None
    return out


def save(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
