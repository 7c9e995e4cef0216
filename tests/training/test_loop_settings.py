"""Issue 12/13 loop settings: the early-stopping tie rule, train.precision, timings logged apart,
threads, and ID-only models never loading feature files."""

import json

import os
import subprocess
import sys
import numpy as np
import pytest
import torch

from cliper import runtime
from cliper.config import load_config
from cliper.errors import ConfigError
from cliper.testing import tiny_dataset
from cliper.testing import write_inter as _write_inter
from cliper.training.runner import build_model, make_evaluator, train_run
from cliper.training.trainer import Trainer


@pytest.fixture(autouse=True)
def bf16_as_if_native(monkeypatch, request):
    """The bf16 tests check the path's numbers on a tiny graph, so they run on every processor: where
    bf16 is emulated (``runtime.native_cpu_bf16`` False, e.g. AVX2) the trainer refuses it, and here
    it is told the CPU has it. The test of that refusal keeps the real answer."""
    if "refuses_emulated_bf16" not in request.node.name:
        monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: True)


@pytest.fixture
def inter(tmp_path):
    return _write_inter(tiny_dataset(n_users=60, n_items=40, per_user=10, seed=1), tmp_path / "tiny.inter")


def _cfg(inter, *extra, model="lightgcn"):
    return load_config(overrides=[f"dataset.path={inter}", f"model.name={model}", "train.batch_size=64",
                                  "train.epochs=6", "train.patience=50", "eval.batch_size=16", *extra])


class Scripted:
    """An evaluator whose valid metric follows a script (the test metric is the epoch's index)."""

    def __init__(self, values):
        self.values, self.calls = list(values), 0

    def evaluate(self, model, split="valid"):
        if split == "valid":
            self.calls += 1
            return {"recall@20": self.values[self.calls - 1]}
        return {"recall@20": float(self.calls)}


def _trainer(inter, values, *extra):
    from cliper.training.runner import load_dataset

    cfg = _cfg(inter, f"train.epochs={len(values)}", *extra)
    data = load_dataset(cfg)
    model = build_model(cfg, data, None)
    return Trainer(model, data, Scripted(values), cfg.train, "recall@20", cfg.seed, None, progress=False)


def test_default_tie_rule_is_the_references_4_decimal_rounding(inter):
    # 0.05004 rounds to 0.0500: a tie with the best, not an improvement (MMRec: round(., 4), then strict >)
    t = _trainer(inter, [0.05, 0.05004, 0.05006, 0.05006])
    r = t.fit()
    assert r.best_epoch == 3 and [h["best"] for h in t.history] == [True, False, True, False]
    assert r.test == {"recall@20": 3.0}  # test metrics of the selected epoch


def test_unrounded_comparison_and_min_delta(inter):
    t = _trainer(inter, [0.05, 0.05004, 0.05006], "train.metric_decimals=null")
    assert t.fit().best_epoch == 3 and [h["best"] for h in t.history] == [True, True, True]
    # min_delta: a gain must exceed it (after rounding)
    t = _trainer(inter, [0.05, 0.0504, 0.0506, 0.0520], "train.min_delta=0.0005")
    t.fit()
    assert [h["best"] for h in t.history] == [True, False, True, True]


def test_ties_count_towards_patience(inter):
    t = _trainer(inter, [0.1, 0.10001, 0.10002, 0.2], "train.patience=2")
    r = t.fit()
    assert r.stopped_early and r.epochs_run == 3 and r.best_epoch == 1


def test_valid_test_and_save_seconds_are_logged_apart(inter, tmp_path):
    m = train_run(_cfg(inter, "train.epochs=2"), tmp_path / "r", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "r" / "epochs.jsonl").read_text().splitlines()]
    for r in rows:
        assert {"valid_seconds", "test_seconds", "save_seconds"} <= set(r) and "eval_seconds" not in r
        assert r["valid_seconds"] > 0
        assert (r["test_seconds"] > 0) == r["best"]  # the test pass and best.pt write run on improvement only
    assert m["eval_seconds"] == pytest.approx(sum(r["valid_seconds"] + r["test_seconds"] for r in rows), abs=0.01)
    assert m["threads"] == torch.get_num_threads() and m["precision"] == "fp32"


def test_fp16_on_cpu_is_one_clear_error(inter, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device; on CPU use bf16 .*natively.* or fp32"):
        train_run(_cfg(inter, "train.precision=fp16"), tmp_path / "r", progress=False)
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: False)  # an AVX2 CPU: bf16 is no advice there
    with pytest.raises(ConfigError, match=r"fp16 needs a CUDA device; on CPU use fp32 \(this CPU has no native bf16\)$"):
        train_run(_cfg(inter, "train.precision=fp16"), tmp_path / "r2", progress=False)
    with pytest.raises(Exception, match="precision"):
        _cfg(inter, "train.precision=fp8")


def test_trainer_refuses_emulated_bf16_with_one_clear_error(inter, tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: False)
    with pytest.raises(ConfigError, match=r"train.precision=bf16: this CPU \(.+\) has no native bf16.*use train.precision=fp32"):
        train_run(_cfg(inter, "train.precision=bf16"), tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "epochs.jsonl").exists()  # refused before any epoch ran
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: True)
    assert train_run(_cfg(inter, "train.precision=bf16", "train.epochs=1"), tmp_path / "n", progress=False)[
        "precision"] == "bf16"


def test_bf16_autocast_trains_close_to_fp32(inter, tmp_path):
    extra = ("features.random_image_dim=32", "features.random_text_dim=16", "train.epochs=3")
    a = train_run(_cfg(inter, *extra, model="vbpr"), tmp_path / "a", progress=False)
    b = train_run(_cfg(inter, *extra, "train.precision=bf16", model="vbpr"), tmp_path / "b", progress=False)
    la = [json.loads(x)["loss"] for x in (tmp_path / "a" / "epochs.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "b" / "epochs.jsonl").read_text().splitlines()]
    assert la != lb  # the linear projections really ran in bf16
    assert np.allclose(la, lb, rtol=0.02) and all(np.isfinite(lb))
    assert b["precision"] == "bf16"


def test_train_step_runs_the_loss_under_the_precision_setting(inter):
    """Benchmarks step through Trainer.train_step, so a bf16 profile measures bf16 (and fp32 stays fp32)."""
    seen = []
    for precision in ("fp32", "bf16"):
        trainer = _trainer(inter, [0.1], f"train.precision={precision}")
        plain = trainer.model.calculate_loss

        def spy(batch, plain=plain):
            seen.append(torch.is_autocast_enabled("cpu"))
            return plain(batch)

        trainer.model.calculate_loss = spy
        loss = trainer.train_step(next(iter(trainer.batches(1))), 1)
        assert loss.dtype == torch.float32 and not loss.requires_grad and torch.isfinite(loss)
    assert seen == [False, True]


def test_bf16_resume_is_bit_exact(inter, tmp_path):
    cfg = _cfg(inter, "train.precision=bf16")
    full = train_run(cfg, tmp_path / "full", progress=False)
    part = tmp_path / "part"
    train_run(_cfg(inter, "train.precision=bf16", "train.epochs=3"), part, progress=False)
    (part / "metrics.json").unlink()
    import yaml

    (part / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    assert train_run(cfg, part, resume=True, progress=False)["test"] == full["test"]


def test_default_threads_rule():
    from cliper.runtime import default_threads

    assert [default_threads(n) for n in (1, 2, 3, 7, 8, 16, 32, 128)] == [1, 1, 1, 1, 2, 4, 8, 8]


def test_set_threads_without_setting_uses_the_rule(monkeypatch):
    from cliper import runtime

    before = torch.get_num_threads()
    monkeypatch.delenv("CLIPER_THREADS", raising=False)
    try:
        assert runtime.set_threads(None) == runtime.default_threads() == torch.get_num_threads()
        monkeypatch.setenv("CLIPER_THREADS", "-2")
        with pytest.raises(ConfigError, match="positive integer"):
            runtime.set_threads(None)
    finally:
        torch.set_num_threads(before)


def test_id_only_models_never_load_feature_files(inter, tmp_path, monkeypatch):
    import cliper.training.runner as runner

    def boom(*a, **k):
        raise AssertionError("features were loaded for an ID-only model")

    monkeypatch.setattr(runner, "build_features", boom)
    cfg = _cfg(inter, "train.epochs=1", "features.random_image_dim=64")
    assert not runner.uses_features(cfg)
    train_run(cfg, tmp_path / "r", progress=False)
    assert runner.uses_features(_cfg(inter, "features.random_image_dim=64", model="vbpr"))


def test_keep_freed_memory_is_off_by_default_and_an_option(inter):
    assert _cfg(inter).runtime.keep_freed_memory is False
    assert _cfg(inter, "runtime.keep_freed_memory=true").runtime.keep_freed_memory is True
    assert _cfg(inter).runtime.freed_memory_cap_mib == 64
    assert _cfg(inter, "runtime.freed_memory_cap_mib=null").runtime.freed_memory_cap_mib is None


_FAULTS_CHILD = """
import resource, sys, torch
torch.set_num_threads(1)
from cliper.runtime import cap_freed_memory
if sys.argv[1] == "cap":
    assert cap_freed_memory(64)
from cliper.config import load_config
from cliper.testing import tiny_dataset, write_inter
from cliper.training.runner import build_model, load_dataset, make_evaluator
from cliper.training.trainer import Trainer
inter = write_inter(tiny_dataset(n_users=12000, n_items=4000, per_user=8, seed=1), sys.argv[2])
cfg = load_config(overrides=[f"dataset.path={inter}", "model.name=lightgcn", "train.checkpoint=false"])
data = load_dataset(cfg)
model = build_model(cfg, data, None)
tr = Trainer(model, data, make_evaluator(cfg, data, torch.device("cpu")), cfg.train, progress=False)
tr.train_epoch(1)
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
tr.train_epoch(2)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_capped_freed_memory_stops_per_batch_page_faults(tmp_path):
    """glibc's dynamic thresholds hand a loop's freed temporaries back and fault them in again;
    the default cap keeps them (page faults per step fall from thousands to ~0)."""
    def faults(mode):
        env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "0"}  # glibc's thresholds alone (an earlier run may set 1)
        out = subprocess.run([sys.executable, "-c", _FAULTS_CHILD, mode, str(tmp_path / "g.inter")],
                             capture_output=True, text=True, check=True, env=env)
        return int(out.stdout.strip().splitlines()[-1])

    glibc, capped = faults("glibc"), faults("cap")  # one LightGCN epoch of 36 batches on a 12,000 x 4,000 graph
    assert glibc > 5000  # measured 36,000-63,000: pages faulted in again every batch
    assert capped < glibc / 10  # measured 6-1,000


_HUGE_PAGES_CHILD = """
import resource, sys
from cliper.runtime import apply_memory_settings, huge_pages_active
apply_memory_settings(huge_pages=sys.argv[1] == "on")
import torch
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):  # a 48 MiB per-batch temporary (over glibc's mmap threshold: a fresh mapping each time)
    torch.empty(12 << 20).fill_(1.0)
print(huge_pages_active(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


def _thp_mode() -> str:
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="ascii").read()
    except OSError:
        return "never"
    return text.split("[")[1].split("]")[0] if "[" in text else "never"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="transparent huge pages")
def test_huge_pages_cut_the_faults_of_big_temporaries(monkeypatch):
    """runtime.huge_pages (the default) reaches torch's allocator when set before the first tensor, and a
    big temporary then faults in 2 MiB at a time instead of 4 KiB."""
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)

    def run(mode):
        out = subprocess.run([sys.executable, "-c", _HUGE_PAGES_CHILD, mode], capture_output=True, text=True,
                             check=True)
        active, faults = out.stdout.strip().splitlines()[-1].split()
        return active == "True", int(faults)

    (on, faults_on), (off, faults_off) = run("on"), run("off")
    assert on and not off
    assert faults_off > 6 * (48 << 20) // 4096  # every allocation mapped and faulted in afresh
    if _thp_mode() in ("madvise", "always"):
        assert faults_on < faults_off / 5  # measured 5,400 against 98,000-123,000


def test_every_backbone_trains_one_epoch_under_bf16(inter, tmp_path, monkeypatch):
    """Custom sparse autograd functions stay in fp32 under autocast (CSR kernels have no bf16 path)."""
    from cliper.models import available_models
    from cliper.training.runner import build_features, load_dataset, uses_features

    monkeypatch.setenv("CLIPER_CACHE_DIR", str(tmp_path / "cache"))
    for name in available_models():
        cfg = _cfg(inter, "train.precision=bf16", "features.random_image_dim=32", "features.random_text_dim=16",
                   model=name)
        data = load_dataset(cfg)
        model = build_model(cfg, data, build_features(cfg, data.n_items) if uses_features(cfg) else None)
        loss = Trainer(model, data, make_evaluator(cfg, data, torch.device("cpu")), cfg.train,
                       progress=False).train_epoch(1)
        assert np.isfinite(loss), name
