"""Render docs/benchmarks.md from every benchmarks/results/*.json (the one source of every figure).

    python benchmarks/render.py            # rewrite docs/benchmarks.md
    python benchmarks/render.py --check    # exit 1 if docs/benchmarks.md is not what the JSON files render

It also regenerates the headline results table of README.md (between the ``results:`` markers).

Each result file has the shape written by :func:`results_io.write_result`; it becomes one
section with the exact command, the date, the machine (cores, torch threads, load average,
versions), the table and the notes. Nothing on the page is typed by hand: to change a
figure, re-run the benchmark that wrote it, then this script.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"
README_START = "<!-- results:start (python benchmarks/render.py writes this table) -->"
README_END = "<!-- results:end -->"

# Page order and headings; results not listed here follow in name order under their own name.
SECTIONS = {
    "quality": ("Model quality on the real graphs", "python benchmarks/bench_quality.py --runs baby:lightgcn,baby:bpr"),
    "quickstart_results": ("Offline demo: vanilla vs CLIPER features (synthetic)", "python benchmarks/bench_quickstart.py"),
    "quickstart": ("Offline demo: wall time per stage (synthetic)", "python benchmarks/bench_quickstart.py"),
    "models_issue13_r7_baby": ("The backbones with MMRec figures on Baby on the AVX2 EPYC with the floor columns: the "
                               "dense arithmetic of a training epoch, counted op by op (benchmarks/dense_products.py), "
                               "at the best fp32 product rate measured in the same process, and ref / floor, the "
                               "highest x ref that computation allows here; same code as the sixth round, two epochs, "
                               "two valid passes, each beside its same-run reference, quiet machine (this run alone)",
                               "python benchmarks/bench_models.py --models bpr,lightgcn,vbpr,freedom,slmrec,dualgnn,mmgcn,"
                               "lattice --datasets baby --epochs 2 --evals 2 --threads 1 --ref-epochs 1 --timeout 1800 "
                               "--name models_issue13_r7_baby"),
    "models_issue13_r7_baby_pass": ("The evaluation pass against its own arithmetic on Baby, AVX2 EPYC: the bare ranking "
                                    "plus the least time the model's representation can take (repr GFLOP at the peak "
                                    "product rate) for the backbones whose pass computes more than embeddings; one epoch, "
                                    "two valid passes, no reference, quiet machine (this run alone)",
                                    "python benchmarks/bench_models.py --models vbpr,mmgcn,lattice,grcn --datasets baby "
                                    "--epochs 1 --evals 2 --threads 1 --ref-epochs 0 --timeout 1800 "
                                    "--name models_issue13_r7_baby_pass"),
    "models_issue13_r7_sports_dualgnn": ("DualGNN on Sports beside its same-run reference, with the floor columns, AVX2 "
                                         "EPYC: one epoch, one valid pass, quiet machine (this run alone)",
                                         "python benchmarks/bench_models.py --models dualgnn --datasets sports --epochs 1 "
                                         "--evals 1 --threads 1 --ref-epochs 1 --timeout 2400 "
                                         "--name models_issue13_r7_sports_dualgnn"),
    "models_issue13_r6_baby": ("The backbones with MMRec figures on Baby on an AVX2 EPYC (no AVX-512: its products run at "
                               "about half the previous machines' rate), each beside its same-run reference (the "
                               "independent implementation of MMRec's computation, one epoch, fresh process); two epochs, "
                               "two valid passes, quiet machine (this run alone). FREEDOM's reference here still froze the "
                               "feature tables (cliper's decision); with MMRec's trained ones see the next section",
                               "python benchmarks/bench_models.py --models bpr,lightgcn,vbpr,freedom,slmrec,dualgnn,mmgcn,"
                               "lattice --datasets baby --epochs 2 --evals 2 --threads 1 --ref-epochs 1 --timeout 1800 "
                               "--name models_issue13_r6_baby"),
    "models_issue13_r6_baby_freedom": ("FREEDOM on Baby again, its reference with MMRec's trained feature tables "
                                       "(REF_PARAMS: train_features=1), AVX2 EPYC",
                                       "python benchmarks/bench_models.py --models freedom --datasets baby --epochs 2 "
                                       "--evals 2 --threads 1 --ref-epochs 1 --timeout 1800 --name models_issue13_r6_baby_freedom"),
    "models_issue13_r6_sports": ("The same on Sports for the backbones whose reference epoch fits this session, AVX2 EPYC: "
                                 "the first Sports ratios measured against a reference in the same run. The LATTICE and GRCN references were "
                                 "stopped by hand (LATTICE's after 18 minutes of its first epoch at 9.9 GB resident, "
                                 "GRCN's after 10), so their cells show the stopped process",
                                 "python benchmarks/bench_models.py --models lightgcn,vbpr,freedom,slmrec,lattice,grcn "
                                 "--datasets sports --epochs 1 --evals 1 --threads 1 --ref-epochs 1 --timeout 1800 "
                                 "--name models_issue13_r6_sports"),
    "models_issue13_r5_baby": ("The backbones with MMRec figures on Baby after the fifth round (trained tables projected "
                               "without their sum), and BPR; three epochs each, two valid passes, quiet machine (this run alone)",
                               "python benchmarks/bench_models.py --models bpr,lightgcn,vbpr,freedom,slmrec,dualgnn,mmgcn,"
                               "lattice --datasets baby --epochs 3 --evals 2 --threads 1 --timeout 1200 "
                               "--name models_issue13_r5_baby"),
    "models_issue13_r5_baby_again": ("LATTICE and MMGCN on Baby again, right after it (one epoch, two valid passes): the "
                                     "spread of their evaluation ratio between runs",
                                     "python benchmarks/bench_models.py --models lattice,mmgcn --datasets baby --epochs 1 "
                                     "--evals 2 --threads 1 --timeout 1200 --name models_issue13_r5_baby_again"),
    "models_issue13_r5_sports": ("Every backbone on Sports with the code of the fifth round, one epoch and one valid pass "
                                 "each, quiet machine (MMRec's Sports times are not known here)",
                                 "python benchmarks/bench_models.py --datasets sports --epochs 1 --evals 1 --threads 1 "
                                 "--timeout 1200 --name models_issue13_r5_sports"),
    "models_issue13_r4_baby": ("The backbones with MMRec figures on Baby after the fourth round (VBPR's recurring "
                               "oneDNN shapes and one-node loss, SLMRec's distinct-row InfoNCE, MMGCN's batch rows in "
                               "its last layer), and BPR; three epochs each, two valid passes, quiet machine (this run alone)",
                               "python benchmarks/bench_models.py --models bpr,lightgcn,vbpr,freedom,slmrec,dualgnn,mmgcn,"
                               "lattice --datasets baby --epochs 3 --evals 2 --threads 1 --timeout 1200 "
                               "--name models_issue13_r4_baby"),
    "models_issue13_r4_sports": ("The backbones changed in the fourth round, on Sports, quiet machine (MMRec's Sports "
                                 "times are not known here)",
                                 "python benchmarks/bench_models.py --models vbpr,slmrec,mmgcn,lattice --datasets sports "
                                 "--epochs 1 --evals 1 --threads 1 --timeout 1200 --name models_issue13_r4_sports"),
    "models_issue13_baby": ("Every backbone: speed, eval ratio to the bare ranking operations, peak memory vs MMRec (Baby)",
                            "python benchmarks/bench_models.py --datasets baby --epochs 1 --evals 1 --threads 1 "
                            "--timeout 600 --name models_issue13_baby"),
    "models_issue13_baby_cap64": ("Every backbone on Baby with the default freed-memory cap (64 MiB); it ran beside the test suite (load ~3.7)",
                                  "python benchmarks/bench_models.py --datasets baby --epochs 1 --evals 1 --threads 1 "
                                  "--timeout 600 --name models_issue13_baby_cap64"),
    "models_issue13_baby_glibc": ("Every backbone on Baby with glibc's dynamic allocator defaults, run right after it",
                                  "python benchmarks/bench_models.py --datasets baby --epochs 1 --evals 1 --threads 1 "
                                  "--timeout 600 --freed-cap-mib none --name models_issue13_baby_glibc"),
    "models_alloc_ab_cap64": ("Freed-memory cap (default) against glibc's defaults, back to back on a quiet machine: cap",
                              "python benchmarks/bench_models.py --models lightgcn,freedom,dualgnn,grcn,vbpr --datasets baby "
                              "--epochs 1 --evals 1 --threads 1 --name models_alloc_ab_cap64"),
    "models_alloc_ab_glibc": ("The same, glibc's dynamic defaults, run right after it",
                              "python benchmarks/bench_models.py --models lightgcn,freedom,dualgnn,grcn,vbpr --datasets baby "
                              "--epochs 1 --evals 1 --threads 1 --freed-cap-mib none --name models_alloc_ab_glibc"),
    "models_issue13_eval": ("Evaluation passes split: representation, ranking, the bare ops at 64-d and at each model's "
                            "score width (Baby)",
                            "python benchmarks/bench_models.py --datasets baby --epochs 1 --evals 2 --threads 1 "
                            "--timeout 900 --name models_issue13_eval"),
    "models_issue13_final_baby": ("Every backbone on Baby after this round's speed work (rows propagation, huge pages, "
                                  "kept buffers, oneDNN projections, buffered scoring); another benchmark ran on "
                                  "the other core (load about 2)",
                                  "python benchmarks/bench_models.py --models bpr,lightgcn,vbpr,freedom,bm3,lattice,slmrec,"
                                  "dualgnn,mmgcn,grcn,mgcn,lgmrec,dragon,smore --datasets baby --epochs 1 --evals 1 "
                                  "--threads 1 --name models_issue13_final_baby"),
    "p14_lattice": ("LATTICE after its evaluation-pass work (tiled grouped kNN search, search reuse in training)",
                    "python benchmarks/bench_models.py --models lattice --datasets baby --epochs 1 --evals 2 "
                    "--threads 1 --name p14_lattice"),
    "p14_lattice_sports": ("LATTICE after its evaluation-pass work, on Sports",
                           "python benchmarks/bench_models.py --models lattice --datasets sports --epochs 1 --evals 2 "
                           "--threads 1 --timeout 900 --name p14_lattice_sports"),
    "p14_lattice_before": ("LATTICE before it (commit 75148a0), the same command, earlier the same day",
                           "python benchmarks/bench_models.py --models lattice --datasets baby --epochs 1 --evals 2 "
                           "--threads 1 --name p14_lattice_before"),
    "p15_mmgcn_baby": ("MMGCN after its third speed session (batch rows in the last layer, kept first-layer buffers)",
                       "python benchmarks/bench_models.py --models mmgcn --datasets baby --epochs 1 --evals 1 "
                       "--threads 1 --name p15_mmgcn_baby"),
    "p15_mmgcn_baby_main": ("MMGCN before it (main's mmgcn.py), the same command right after",
                            "PYTHONPATH=MAIN/src python benchmarks/bench_models.py --models mmgcn --datasets baby "
                            "--epochs 1 --evals 1 --threads 1 --name p15_mmgcn_baby_main"),
    "p15_mmgcn_baby_2ep": ("MMGCN after it, 2 seeded epochs (valid R@20 against main's)",
                           "python benchmarks/bench_models.py --models mmgcn --datasets baby --epochs 2 --evals 1 "
                           "--threads 1 --name p15_mmgcn_baby_2ep"),
    "p15_mmgcn_baby_2ep_main": ("MMGCN before it (main's mmgcn.py), 2 seeded epochs, right after",
                                "PYTHONPATH=MAIN/src python benchmarks/bench_models.py --models mmgcn --datasets baby "
                                "--epochs 2 --evals 1 --threads 1 --name p15_mmgcn_baby_2ep_main"),
    "p15_mmgcn_baby_2ep_seed2": ("MMGCN after it, 2 epochs under seed 2 (seed noise of valid R@20)",
                                 "python benchmarks/bench_models.py --models mmgcn --datasets baby --epochs 2 --evals 1 "
                                 "--threads 1 -o seed=2 --name p15_mmgcn_baby_2ep_seed2"),
    "p15_mmgcn_baby_2ep_seed2_main": ("MMGCN before it (main's mmgcn.py), 2 epochs under seed 2, right after",
                                      "PYTHONPATH=MAIN/src python benchmarks/bench_models.py --models mmgcn --datasets baby "
                                      "--epochs 2 --evals 1 --threads 1 -o seed=2 --name p15_mmgcn_baby_2ep_seed2_main"),
    "models_issue13_sports": ("Every backbone: the same on Sports",
                              "python benchmarks/bench_models.py --datasets sports --epochs 1 --evals 1 --threads 1 "
                              "--timeout 900 --name models_issue13_sports"),
    "models_issue13_clothing": ("Peak memory on a Clothing-sized graph (synthetic)",
                                "python benchmarks/bench_models.py --models lightgcn,bpr --datasets clothing "
                                "--epochs 1 --evals 1 --name models_issue13_clothing"),
    "models_issue13_r3_baby": ("Every backbone on Baby after the third round (oneDNN fp32 products, embedding_bag "
                               "graph products for LightGCN and DualGNN, LightGCN's fused batch loss); LATTICE in "
                               "the next table; another engineer's tests ran on the other core",
                               "python benchmarks/bench_models.py --models bpr,lightgcn,vbpr,freedom,bm3,slmrec,"
                               "dualgnn,mmgcn,grcn,mgcn,lgmrec,dragon,smore --datasets baby --epochs 1 --evals 1 "
                               "--threads 1 --timeout 1200 --name models_issue13_r3_baby"),
    "models_issue13_r3_baby_3ep": ("The backbones with MMRec figures on Baby, three epochs each (s/epoch is their "
                                   "mean) and two valid passes, quiet machine (load about 1: this run alone)",
                                   "python benchmarks/bench_models.py --models lightgcn,vbpr,freedom,slmrec,dualgnn,"
                                   "mmgcn --datasets baby --epochs 3 --evals 2 --threads 1 --timeout 1200 "
                                   "--name models_issue13_r3_baby_3ep"),
    "models_issue13_r3_lattice": ("LATTICE on Baby and Sports after the third round (tiled exact kNN search, the "
                                  "first batch reusing the last pass's search)",
                                  "python benchmarks/bench_models.py --models lattice --datasets baby,sports --epochs 1 "
                                  "--evals 1 --threads 1 --timeout 1200 --name models_issue13_r3_lattice"),
    "models_issue13_r3_sports": ("The backbones with MMRec figures on Sports, third round (MMRec's Sports times are "
                                 "not known here: cliper's own figures; another engineer's tests ran on the other core)",
                                 "python benchmarks/bench_models.py --models lightgcn,vbpr,freedom,slmrec,dualgnn,mmgcn "
                                 "--datasets sports --epochs 1 --evals 1 --threads 1 --timeout 1200 "
                                 "--name models_issue13_r3_sports"),
    "p15_slmrec_baby": ("SLMRec after its distinct-row InfoNCE (counts as weights, kept chunked buffer, recurring "
                        "oneDNN shapes), three epochs (s/epoch is their mean); load about 1.3",
                        "python benchmarks/bench_models.py --models slmrec --datasets baby --epochs 3 --evals 1 "
                        "--threads 1 --name p15_slmrec_baby"),
    "p15_slmrec_baby_before": ("SLMRec before that work: the same command with PYTHONPATH on main at e33702c, "
                               "right after it (load about 1.6)",
                               "python benchmarks/bench_models.py --models slmrec --datasets baby --epochs 3 "
                               "--evals 1 --threads 1 --name p15_slmrec_baby_before"),
    "p15_slmrec_sports": ("SLMRec after the same work, on Sports (MMRec's Sports time is not known here)",
                          "python benchmarks/bench_models.py --models slmrec --datasets sports --epochs 1 --evals 1 "
                          "--threads 1 --name p15_slmrec_sports"),
    "precision": ("bf16 autocast against fp32 at an equal epoch budget (random features)",
                  "python benchmarks/bench_precision.py --models vbpr --epochs 3 --seeds 1,2"),
    "precision_mmgcn": ("bf16 autocast against fp32, MMGCN (random features)",
                        "python benchmarks/bench_precision.py --models mmgcn --epochs 1 --seeds 1,2 --name precision_mmgcn"),
    "models_keep_freed_on": ("runtime.keep_freed_memory on: speed and peak memory",
                             "python benchmarks/bench_models.py --models vbpr,lightgcn --datasets baby --epochs 2 "
                             "--evals 1 --keep-freed-memory --name models_keep_freed_on"),
    "models_keep_freed_off": ("runtime.keep_freed_memory off (the default), run right after it",
                              "python benchmarks/bench_models.py --models vbpr,lightgcn --datasets baby --epochs 2 "
                              "--evals 1 --name models_keep_freed_off"),
    "extract": ("Feature extraction speed", "python benchmarks/bench_extract.py"),
    "data": ("Dataset building speed", "python benchmarks/bench_data.py"),
    "demo": ("Demo catalogue and CLIP training time (synthetic)", "python benchmarks/bench_demo.py"),
    "demo_retrieval": ("Demo CLIP: held-out retrieval (synthetic)", "python benchmarks/bench_demo.py"),
}

HEADER = """\
# Benchmarks

<!-- Generated by `python benchmarks/render.py` from benchmarks/results/*.json. Do not edit by hand. -->

Every figure in this documentation comes from a JSON result that a benchmark script wrote
(`benchmarks/results/<name>.json`, shape defined by `benchmarks/results_io.py`). This page is
rendered from those files by one command:

```bash
python benchmarks/render.py
```

Each section gives the exact command that produced it, when, and on what machine: CPU cores,
the processor and the vector instructions torch dispatches to (recorded from 2026-12-02 on; machines
of this workplace are not all one processor: an AVX-512 EPYC and an AVX2 one ran the same code about
2x apart, so compare figures only within one processor, or as ratios to a baseline of the same
run), torch threads, the 1/5/15-minute load average when the run ended (these machines are shared: a
high load slows every row), and the torch and Python versions. To refresh a figure, re-run its
command, then `python benchmarks/render.py`; a test (`tests/docs/test_docs.py`) fails when this page
differs from what the JSON files render. Results measured under different conditions are not kept
side by side: a re-run replaces the file.

Larger runs that these machines could not fit in one sitting are not recorded yet; their commands:

- every backbone on both graphs and the synthetic Clothing-sized one: `python benchmarks/bench_models.py --datasets baby,sports,clothing --epochs 1 --evals 1 --threads 1 --name models_issue13`
- ID-only quality on Sports as well: `python benchmarks/bench_quality.py --runs baby:lightgcn,baby:bpr,sports:lightgcn`
- multimodal backbones trained to early stopping on seeded random features (a plumbing check, not a
  CLIPER result): `python benchmarks/bench_quality.py --runs baby:vbpr,baby:lattice,baby:bm3,baby:freedom --name quality_random`
"""


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}" if abs(v) < 1e-3 and v != 0 else f"{v:,.4g}" if abs(v) >= 1e4 else repr(v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def _machine(m: dict) -> str:
    load = m.get("loadavg") or []
    load_s = " / ".join(f"{x:g}" for x in load) if load else "-"
    cpu = ", ".join(str(x) for x in (m.get("cpu"), m.get("cpu_capability")) if x) or "processor not recorded"
    return (f"{m.get('cores')} cores ({cpu}), {m.get('threads') if m.get('threads') is not None else 'default'} torch "
            f"thread(s), load average {load_s}; torch {m.get('torch') or '-'}, Python {m.get('python')}, "
            f"{m.get('platform')}")


def render_section(doc: dict, title: str) -> str:
    cols = doc["columns"]
    out = [f"## {title} {{#{doc['benchmark'].replace('_', '-')}}}", "",
           "```bash", doc["command"], "```", "",
           f"Measured {doc['date']} on {_machine(doc['machine'])}.", ""]
    if doc["rows"]:
        out.append("| " + " | ".join(_cell(c) for c in cols) + " |")
        out.append("|" + "---|" * len(cols))
        for r in doc["rows"]:
            out.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    else:
        out.append("No rows.")
    if doc.get("notes"):
        out += ["", doc["notes"].strip()]
    out.append("")
    return "\n".join(out)


def load_results(results_dir: Path = RESULTS_DIR) -> dict[str, dict]:
    docs = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        docs[doc.get("benchmark", path.stem)] = doc
    return docs


SIDE_BY_SIDE_INTRO = """\
## Side by side with independent implementations {#side-by-side}

Each row trains a cliper backbone (`cliper train`'s own path, packaged defaults) and an
implementation written apart from it (`benchmarks/independent/<model>.py`, following the reference
code's behaviour; its loop, sampler, evaluator and early stopping are
`benchmarks/independent/harness.py`, written to MMRec's semantics) on the same split and the same
feature arrays, for each seed; test figures are taken at each side's own early-stopping epoch.
Synthetic graph and synthetic features: fidelity checks, not results of the methods. The
command of a row is in its JSON file (`benchmarks/results/side_by_side/`).
"""

SIDE_BY_SIDE_EPOCHS = (5, 10, 25, 50)


def _pm(pair) -> str:
    return f"{pair[0]:.4f} ± {pair[1]:.4f}"


def _curve_cells(rows: list[dict], side: str) -> str:
    cells = []
    for e in SIDE_BY_SIDE_EPOCHS:
        vals = [r[side]["valid_curve"][e - 1] for r in rows if len(r[side]["valid_curve"]) >= e]
        cells.append(f"{sum(vals) / len(vals):.4f}" if len(vals) == len(rows) else "-")
    return " / ".join(cells)


def render_side_by_side(results_dir: Path) -> str:
    """One table over ``results_dir/side_by_side/*.json`` (finished comparisons only)."""
    paths = sorted((Path(results_dir) / "side_by_side").glob("*.json"))
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in paths if not p.name.endswith(".partial.json")]
    docs = [d for d in docs if d.get("summary")]
    if not docs:
        return ""
    out = [SIDE_BY_SIDE_INTRO,
           "| model | graph / features | seeds | test R@20 cliper | independent | relative | within 2 SE | "
           "test N@20 cliper / independent | best epochs cliper / independent | "
           f"valid R@20 at epochs {'/'.join(map(str, SIDE_BY_SIDE_EPOCHS))}: cliper; independent | measured |",
           "|" + "---|" * 10]
    for d in docs:
        r, n = d["summary"]["recall@20"], d["summary"]["ndcg@20"]
        rows = d["rows"]
        label = d.get("label") or d["benchmark"].removeprefix("side_by_side_")
        dims = f"{d['features']} {d['image_dim']}+{d['text_dim']}" if d["image_dim"] or d["text_dim"] else "no features"
        feats = f"{Path(d['dataset']).name} / {dims}"
        epochs = ", ".join(f"{x['cliper']['best_epoch']}/{x['independent']['best_epoch']}" for x in rows)
        out.append(f"| {label} | {feats} | {len(rows)} | {_pm(r['cliper'])} | {_pm(r['independent'])} | "
                   f"{r['relative']:+.1%} | {_cell(r['within_2se'])} | {n['cliper'][0]:.4f} / {n['independent'][0]:.4f} | "
                   f"{epochs} | {_curve_cells(rows, 'cliper')}; {_curve_cells(rows, 'independent')} | "
                   f"{d['machine'].get('threads')} thread, {str(d.get('date', ''))[:10] or '-'} |")
    out.append("")
    return "\n".join(out)


def render(results_dir: Path = RESULTS_DIR) -> str:
    """The whole page, as text, from the JSON files in ``results_dir``."""
    docs = load_results(results_dir)
    parts = [HEADER]
    order = [n for n in SECTIONS if n in docs] + sorted(n for n in docs if n not in SECTIONS)
    for name in order:
        parts.append(render_section(docs[name], SECTIONS.get(name, (name, ""))[0]))
    for name, (title, cmd) in SECTIONS.items():
        if name not in docs:
            parts.append(f"## {title} {{#{name.replace('_', '-')}}}\n\n**Not measured yet.** Run `{cmd}` "
                         f"(it writes `benchmarks/results/{name}.json`), then `python benchmarks/render.py`.\n")
    side = render_side_by_side(results_dir)
    if side:
        parts.append(side)
    return "\n".join(parts)


def _f(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def readme_table(docs: dict[str, dict]) -> str:
    """The README's headline table: test R@20 / N@20 from quality.json and quickstart_results.json."""
    out = ["| setting | model | features | test R@20 | test N@20 | source |", "|---|---|---|---|---|---|"]
    q = docs.get("quality")
    if q and q["rows"]:
        for r in q["rows"]:
            pub = (f" (published R@20 {_f(r.get('published R@20'))})" if r.get("published R@20") is not None else "")
            out.append(f"| Amazon {r['dataset'].capitalize()}, shared split | {r['model']} | ID only | "
                       f"{_f(r.get('test R@20'))}{pub} | {_f(r.get('test N@20'))} | "
                       f"[quality](docs/benchmarks.md#quality), {q['date'][:10]} |")
    else:
        out.append("| Amazon Baby / Sports | bpr, lightgcn | ID only | not measured yet | - | "
                   "`python benchmarks/bench_quality.py` |")
    qs = docs.get("quickstart_results")
    if qs and qs["rows"]:
        by = {}
        for r in qs["rows"]:
            by.setdefault(r["backbone"], {})[r["metric"]] = r
        for bb, m in by.items():
            for side, label in (("vanilla", "vanilla (global view)"), ("CLIPER", "CLIPER (SA, tau 0.1)")):
                r20, n20 = m.get("recall@20", {}).get(side), m.get("ndcg@20", {}).get(side)
                out.append(f"| `cliper quickstart` (**synthetic**) | {bb} | {label} | {_f(r20)} | {_f(n20)} | "
                           f"[quickstart](docs/benchmarks.md#quickstart-results), {qs['date'][:10]} |")
    else:
        out.append("| `cliper quickstart` (**synthetic**) | vbpr, freedom | vanilla / CLIPER | not measured yet | - | "
                   "`python benchmarks/bench_quickstart.py` |")
    return "\n".join(out)


def render_readme(text: str, results_dir: Path = RESULTS_DIR) -> str:
    """``text`` (the README) with the table between the result markers regenerated."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"README has no {README_START!r} ... {README_END!r} block")
    table = readme_table(load_results(results_dir))
    return text[: start + len(README_START)] + "\n" + table + "\n" + text[end:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when the page is stale")
    ap.add_argument("--results", default=str(RESULTS_DIR))
    ap.add_argument("--output", default=str(PAGE))
    ap.add_argument("--readme", default=str(README), help="README whose results table is regenerated too")
    args = ap.parse_args()
    results = Path(args.results)
    text = render(results)
    out, readme = Path(args.output), Path(args.readme)
    readme_now = readme.read_text(encoding="utf-8")
    readme_new = render_readme(readme_now, results)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.is_file() else ""
        stale = [str(p) for p, a, b in ((out, current, text), (readme, readme_now, readme_new)) if a != b]
        if stale:
            sys.exit(f"stale: {', '.join(stale)}; run python benchmarks/render.py")
        print(f"{out} and {readme} are up to date")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    readme.write_text(readme_new, encoding="utf-8")
    print(f"wrote {out} and the results table of {readme} from {len(load_results(results))} result file(s)")


if __name__ == "__main__":
    main()
