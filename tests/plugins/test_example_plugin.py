"""A model in another installed package trains through ``cliper train -m`` (entry point ``cliper.models``).

The example package in ``examples/plugin`` is really installed (``pip install --target``, no
network, no build isolation) into a temporary folder that the subprocesses put on their path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cliper.testing import tiny_dataset, write_inter

PLUGIN = Path(__file__).resolve().parents[2] / "examples" / "plugin"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(PLUGIN)], check=True, capture_output=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _python(env, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def _cliper(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from cliper.cli.main import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=300)


def test_plugin_is_listed_only_when_installed(plugin_env):
    code = "from cliper.models import available_models; print(' '.join(available_models()))"
    assert "textmf" in _python(plugin_env, code).stdout.split()
    bare = {k: v for k, v in plugin_env.items() if k != "PYTHONPATH"}
    bare["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    assert "textmf" not in _python(bare, code).stdout.split()


def test_plugin_passes_the_contract_kit(plugin_env):
    code = """
from cliper.testing import backbones as C
for check in (C.check_step_lowers_loss, C.check_scores_shape, C.check_seeded_runs_identical,
              C.check_evaluator_masks_train_items, C.check_features_matter):
    check("textmf")
C.check_single_modality("textmf", "text")
C.check_trainable_fusion_learns("textmf", fusion="mlp")
print("contract ok")
"""
    res = _python(plugin_env, code)
    assert res.returncode == 0 and "contract ok" in res.stdout, res.stderr


def test_plugin_trains_through_the_cli_with_its_packaged_config(plugin_env, tmp_path):
    inter = write_inter(tiny_dataset(n_users=60, n_items=40, per_user=8, seed=3), tmp_path / "t.inter")
    common = ["train", "--dataset", str(inter), "--model", "textmf", "-o", "features.random_text_dim=16",
              "-o", "train.epochs=4", "-o", "train.batch_size=64", "-q"]
    res = _cliper(plugin_env, *common, "--output", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best_epoch"] >= 1 and 0.0 <= metrics["test"]["recall@20"] <= 1.0
    # --search reads the grid from the plugin's own textmf.yaml (two reg_weight values)
    res = _cliper(plugin_env, *common, "--search", "--output", str(tmp_path / "grid"))
    assert res.returncode == 0, res.stderr
    runs = [p for p in (tmp_path / "grid").rglob("metrics.json") if p.parent != tmp_path / "grid"]
    assert len(runs) == 2, sorted(str(p) for p in runs)


def test_unknown_model_names_plugins_in_its_error(plugin_env, tmp_path):
    inter = write_inter(tiny_dataset(n_users=20, n_items=15, per_user=5, seed=3), tmp_path / "t.inter")
    res = _cliper(plugin_env, "train", "--dataset", str(inter), "--model", "textmff", "--output", str(tmp_path / "r"))
    assert res.returncode == 2
    assert "did you mean 'textmf'" in res.stderr and "Traceback" not in res.stderr
