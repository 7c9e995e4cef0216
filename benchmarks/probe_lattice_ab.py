"""LATTICE's evaluation representation and kNN search, before vs after, alternating in ONE process.

"Before" is the code of a git revision (``--before``, default: the commit before issue 13's
session-2 LATTICE work): its ``graphs/knn_search.py`` and ``LATTICE.learned_edges`` are loaded
from ``git show`` and run on the very same model object and weights as the current code. Each
repetition times, for both: the whole representation (``score_embeddings()`` from a cold cache)
and the two learned-graph searches alone; medians of wall and process CPU seconds. The neighbour
lists of both are compared; the minimum CPU seconds are given too (least disturbed by other processes). With ``--epochs N`` it also times N pairs of training epochs that
each follow a valid pass: one reusing that pass's search in its first batch, one with the reuse
cleared (``search_reuses`` says whether the reuse happened). ``--split`` times the current
representation's phases apart (projections; the search's tile products alone, its selection =
candidates - products, its float64 re-scoring of the rows float32 leaves undecided; edge values and normalisation; the sparse graph;
propagation), each phase run on its own, minimum CPU seconds over the repetitions. Built as ``cliper train`` builds the model (:mod:`random_run`).

    python benchmarks/probe_lattice_ab.py --reps 5 --epochs 2
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

from random_run import add_run_args, build_run, run_parser

ROOT = Path(__file__).resolve().parents[1]


def _source(rev: str, path: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def _module(name: str, source: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    sys.modules[name] = mod  # dataclasses look their module up
    exec(compile(source, f"<{name}>", "exec"), mod.__dict__)
    return mod


def _timed(fn) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def split_phases(model, zs, reps: int, ks, lattice_mod) -> dict:
    """Phases of the current representation, each timed on its own (see the module doc)."""
    import torch

    n, k = model.n_items, model.params.knn_k
    chunk = model.params.knn_chunk_size or ks.default_chunk_size(n, zs[0].shape[1])
    rows = torch.arange(n)
    m = min(n - 1, k - 1 + ks.TIE_MARGIN)
    invs = [ks._inverse_norms(z) for z in zs]
    cands = [ks._torch_candidates(z, inv, rows, m, chunk, keep_values=True) for z, inv in zip(zs, invs)]

    def rescore():  # as search_knn(with_values=False): float64 only where float32 does not decide
        for z, inv, (c, v) in zip(zs, invs, cands):
            unsure = (~ks._decided_in_float32(v, inv, z.shape[1], min(k, m))).nonzero().squeeze(1)
            ks.finalize(z, inv, unsure, c[unsure], k, True)

    def products():
        for z, inv in zip(zs, invs):
            xs = z * inv[:, None]
            for s in range(0, n, chunk):
                z[s:s + chunk] @ xs.T

    def projections():
        for mod in model.modal:
            model._projected(mod)

    def edges():  # projections + edge values + normalisation, the search answered from _last_search
        model.train()
        model.learned_edges()
        model.eval()

    def graph():
        lattice_mod._edges_to_graph(*model.item_graph_edges_from(*reused), n)

    def propagation():
        h = item_graph @ model.item_embedding.weight
        model.propagate(h)

    with torch.no_grad():
        model.eval()
        model._last_search.clear()
        model.learned_edges()  # fills _last_search
        model.train()
        reused = model.learned_edges()
        model.eval()
        item_graph = lattice_mod._edges_to_graph(*model.item_graph_edges_from(*reused), n)
        phases = {"projections": projections, "products": products,
                  "candidates": lambda: [ks._torch_candidates(z, inv, rows, m, chunk) for z, inv in zip(zs, invs)],
                  "rescore": rescore,
                  "edges_with_projections": edges, "sparse_graph": graph, "propagation": propagation}
        out = {f"split_{name}": [] for name in phases}
        for _ in range(reps):
            for name, fn in phases.items():
                out[f"split_{name}"].append(_timed(fn))
    return out


def main() -> None:
    ap = run_parser(__doc__, dataset="baby")
    ap.add_argument("--before", default="75148a0")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--split", action="store_true", help="also time the phases of the current representation")
    ap.add_argument("--epochs", type=int, default=0, help="pairs of training epochs (after a valid pass), reuse vs none")
    add_run_args(ap)
    args = ap.parse_args([*sys.argv[1:], "--model", "lattice"] if "--model" not in sys.argv else None)

    from cliper.runtime import apply_memory_settings

    apply_memory_settings()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("CLIPER_CACHE_DIR", "/tmp/cliper-probe-eval-cache")
    run = build_run(args.dataset, "lattice", image_dim=args.image_dim, text_dim=args.text_dim,
                    overrides=args.override)
    model = run.model

    old_search = _module("knn_search_before", _source(args.before, "src/cliper/graphs/knn_search.py"))
    lattice_src = _source(args.before, "src/cliper/models/lattice.py").replace("@register\n", "")
    old_lattice = _module("lattice_before", lattice_src)

    def old_topk(features, k, chunk_size=None, include_self=True, search=None):
        res = old_search.search_knn(features, k, include_self, old_search.KnnSearch(backend="torch"), chunk_size)
        return res.values, res.indices

    old_lattice.topk_cosine = old_topk
    old_edges = types.MethodType(old_lattice.LATTICE.learned_edges, model)
    new_edges = model.learned_edges

    import cliper.graphs.knn_search as new_search
    import cliper.models.lattice as new_lattice

    with torch.no_grad():
        zs = [model._projected(m) for m in model.modal]
    n = model.n_items
    old_chunk = old_lattice.learned_chunk_rows(n) if hasattr(old_lattice, "learned_chunk_rows") else None

    def representation(edges):
        def go():
            model.learned_edges = edges
            model._last_search.clear()  # a cold search every time (the reuse is training's, not a pass's)
            model.train()
            model.eval()
            with torch.no_grad():
                model.score_embeddings()
        return go

    def searches(old: bool):
        def go():
            for z in zs:
                if old:
                    old_topk(z, model.params.knn_k, old_chunk)
                else:
                    new_lattice.topk_cosine(z, model.params.knn_k, model.params.knn_chunk_size, with_values=False)
        return go

    same = all(torch.equal(old_topk(z, model.params.knn_k, old_chunk)[1],
                           new_lattice.topk_cosine(z, model.params.knn_k, with_values=False)[1]) for z in zs)
    rows = {k: [] for k in ("repr_before", "repr_after", "search_before", "search_after")}
    for _ in range(args.reps):
        rows["repr_before"].append(_timed(representation(old_edges)))
        rows["repr_after"].append(_timed(representation(new_edges)))
        rows["search_before"].append(_timed(searches(True)))
        rows["search_after"].append(_timed(searches(False)))
    model.learned_edges = new_edges
    if args.split:
        rows.update(split_phases(model, zs, args.reps, new_search, new_lattice))
    epoch_rows = {"epoch_reuse": [], "epoch_fresh": []}
    reused = model.search_reuses
    for e in range(args.epochs):
        for key in ("epoch_reuse", "epoch_fresh"):
            run.evaluator.evaluate(model, "valid")
            if key == "epoch_fresh":
                model._last_search.clear()
            epoch_rows[key].append(_timed(lambda: run.trainer.train_epoch(2 * e + (key == "epoch_fresh") + 1)))
    rows.update({k: v for k, v in epoch_rows.items() if v})
    out = {"dataset": args.dataset, "threads": torch.get_num_threads(), "reps": args.reps, "before": args.before,
           "same_neighbours": same, "search_reuses_in_epochs": model.search_reuses - reused, "load": round(os.getloadavg()[0], 2), "tile_rows": new_search.default_chunk_size(n, zs[0].shape[1])}
    for k, v in rows.items():
        out[f"{k}_s"] = round(statistics.median(w for w, _ in v), 3)
        out[f"{k}_cpu_s"] = round(statistics.median(c for _, c in v), 3)
        out[f"{k}_cpu_min_s"] = round(min(c for _, c in v), 3)  # the least disturbed repetition
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
