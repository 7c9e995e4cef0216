"""MMRec export (text = fused views via cliper.fusion.fuse_views) and the `cliper extract` CLI."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from store_helpers import build_inputs
from typer.testing import CliRunner

from cliper.features.store import FeatureStore


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory):
    from cliper.cli.main import app

    root = tmp_path_factory.mktemp("cli")
    inputs = build_inputs(root / "in")
    res = CliRunner().invoke(app, [
        "extract", "--catalog", str(inputs.catalog), "--id-map", str(inputs.id_map), "--images", str(inputs.images),
        "--encoder", str(inputs.clip), "--output", str(root / "store"), "--device", "cpu", "--batch-size", "32",
        "--export-mmrec", str(root / "mmrec"), "--quiet",
    ])
    assert res.exit_code == 0, res.output
    return inputs, root, res.output


def test_cli_summary_and_store(cli_store):
    inputs, root, output = cli_store
    assert "items: 100 (97 in the catalogue, 3 missing from it)" in output
    assert "views: 5 (title, brand, categories, description, global)" in output
    assert "skipped lines: 2 malformed" in output
    assert "images: 94 encoded, 6 missing (corrupt 1, no_file 5)" in output
    assert "items/s" in output
    assert FeatureStore.open(root / "store").n_items == 100


def test_export_mmrec_uses_fuse_views(cli_store, tmp_path):
    from cliper.fusion import fuse_views

    inputs, root, _ = cli_store
    s = FeatureStore.open(root / "store")
    img, txt = np.load(root / "mmrec" / "image_feat.npy"), np.load(root / "mmrec" / "text_feat.npy")
    np.testing.assert_array_equal(img, np.asarray(s.image))
    np.testing.assert_allclose(txt, fuse_views(np.array(s.views), np.array(s.similarity), "sa", 0.1), atol=1e-6)
    from cliper.features.export import export_mmrec

    paths = export_mmrec(s, tmp_path / "cat", method="concat", views=["title", "global"])
    assert np.load(paths["text_feat"]).shape == (100, 2 * 32)


def test_cli_errors_are_one_line(cli_store, tmp_path, monkeypatch, capsys):
    from cliper.cli.main import main

    inputs, root, _ = cli_store
    monkeypatch.setattr(sys, "argv", ["cliper", "extract", "--catalog", str(tmp_path / "nope.jsonl"), "--encoder",
                                      str(inputs.clip), "--output", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "nope.jsonl" in err[-1] and "not found" in err[-1]
