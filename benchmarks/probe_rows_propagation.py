"""LightGCN's epoch on alternative propagation paths, A/B in one process.

The model is built as ``cliper train`` builds it (packaged defaults, the runtime's allocator settings)
and trained with the trainer's own ``train_epoch``; epochs cycle through ``--paths``, so all see the
same machine load:

- ``rows``: the model as built (batch-rows propagation by user and item halves, the graph's kernel);
- ``mkl``: the same with the model's graphs switched to MKL's CSR product (``sparse_mm``, the kernel
  before LightGCN's graph took ``kernel="bag"``);
- ``nodes``: the batch-rows propagation on the concatenated (users + items) table (LightGCN);
- ``full``: every node propagated through all layers, then the batch's rows selected (LightGCN);
- ``plain``: LightGCN's fused batch loss replaced by the plain autograd expression;
- ``before``: ``mkl``, ``nodes`` and ``plain`` together (LightGCN's step before the embedding_bag kernel,
  the halves and the fused loss; only the rows backward's cheaper ``+ s`` stays, which is bitwise the same).

Prints each epoch's wall and CPU seconds, the medians and their ratios to the first path, and the
losses (the paths are the same arithmetic: values equal up to float rounding between kernels).

    python benchmarks/probe_rows_propagation.py --model lightgcn --pairs 3 --paths rows,mkl,nodes
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time

from random_run import add_run_args, random_run, run_parser


@contextlib.contextmanager
def lightgcn_path(path: str):
    """Route LightGCN's ``propagate_bipartite_rows`` through the concatenated table: ``nodes`` by
    :func:`propagate_rows` (the batch-rows path on one table), ``full`` by the full propagation and a
    row selection."""
    import torch

    from cliper.graphs import adjacency
    from cliper.models import lightgcn

    def on_nodes(graph, x_u, x_i, n_layers, users, items, mean=False):
        nu = graph.n_users
        rows = torch.cat([users, items + nu])
        x = torch.cat([x_u, x_i])
        if path == "full":
            out, x_rows = adjacency.layer_sum(graph, x, n_layers, mean).index_select(0, rows), x.index_select(0, rows)
        else:
            out, x_rows = adjacency.propagate_rows(graph, x, n_layers, rows, mean)
        k = users.numel()
        return out[:k], out[k:], x_rows[:k], x_rows[k:]

    old = lightgcn.propagate_bipartite_rows
    lightgcn.propagate_bipartite_rows = on_nodes
    try:
        yield
    finally:
        lightgcn.propagate_bipartite_rows = old


@contextlib.contextmanager
def plain_loss():
    """Route LightGCN's fused batch loss through the plain expression: BPR and ``l2_penalty`` on gathered rows."""
    from cliper.models import lightgcn
    from cliper.models.layers import bpr_loss, l2_penalty

    def plain(out_u, out_i, ego_u, ego_i, where_u, where_i, form, reg_weight):
        b = where_u.numel()
        u = out_u.index_select(0, where_u)
        p, n = out_i.index_select(0, where_i).split(b)
        reg = l2_penalty(form, ego_u.index_select(0, where_u), *ego_i.index_select(0, where_i).split(b))
        return bpr_loss((u * p).sum(1), (u * n).sum(1)) + reg_weight * reg

    old = lightgcn._RowsLoss.apply
    lightgcn._RowsLoss.apply = plain
    try:
        yield
    finally:
        lightgcn._RowsLoss.apply = old


@contextlib.contextmanager
def mkl_kernel(model):
    """Switch every :class:`SparseGraph` attribute of ``model`` to the ``mkl`` kernel."""
    from cliper.graphs.adjacency import SparseGraph

    graphs = [(g, g.kernel) for g in vars(model).values() if isinstance(g, SparseGraph)]
    for g, _ in graphs:
        g.kernel = "mkl"
    try:
        yield
    finally:
        for g, kernel in graphs:
            g.kernel = kernel


@contextlib.contextmanager
def before(model):
    with mkl_kernel(model), lightgcn_path("nodes"), plain_loss():
        yield


def main() -> None:
    ap = run_parser(__doc__)
    ap.add_argument("--pairs", type=int, default=3, help="rounds of --paths epochs after one warm-up epoch")
    ap.add_argument("--paths", default="rows,mkl", help="comma-separated: rows, mkl, nodes, full, plain, before (the first is the base)")
    add_run_args(ap, dims=False)
    args = ap.parse_args()

    from cliper.runtime import apply_memory_settings

    apply_memory_settings()  # cliper train's allocator defaults (before torch allocates anything)
    import torch

    torch.set_num_threads(args.threads)
    paths = args.paths.split(",")
    if any(p not in ("rows", "mkl", "nodes", "full", "plain", "before") for p in paths):
        raise SystemExit(f"--paths takes rows, mkl, nodes, full, plain, before; got {args.paths!r}")
    times: dict[str, list[float]] = {p: [] for p in paths}
    cpu: dict[str, list[float]] = {p: [] for p in paths}
    losses: dict[str, list[float]] = {p: [] for p in paths}
    with random_run(args.dataset, args.model, overrides=args.override) as run:
        run.trainer.train_epoch(1)  # warm-up
        epoch = 1
        for i in range(len(paths) * args.pairs):
            path = paths[i % len(paths)]
            epoch += 1
            ctx = {"full": lambda: lightgcn_path("full"), "nodes": lambda: lightgcn_path("nodes"),
                   "mkl": lambda: mkl_kernel(run.model), "plain": plain_loss,
                   "before": lambda: before(run.model)}.get(path, contextlib.nullcontext)
            with ctx():
                t, c = time.perf_counter(), time.process_time()
                losses[path].append(run.trainer.train_epoch(epoch))
                times[path].append(time.perf_counter() - t)
                cpu[path].append(time.process_time() - c)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    base = paths[0]
    print(json.dumps({"model": args.model, "dataset": args.dataset, "threads": torch.get_num_threads(),
                      "epoch_s": times, "epoch_cpu_s": cpu, "median_s": med, "median_cpu_s": med_cpu,
                      "over_" + base: {k: round(v / med[base], 3) for k, v in med.items()},
                      "over_" + base + "_cpu": {k: round(v / med_cpu[base], 3) for k, v in med_cpu.items()},
                      "losses": losses}))

if __name__ == "__main__":
    main()
