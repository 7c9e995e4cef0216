"""MMGCN's training step and evaluation pass, old code against new in ONE process.

The allocator is set before torch allocates: ``cap_freed_memory(64)`` and torch's huge pages, as
``cliper train`` sets them (``PROBE_MMAP_MIB=64`` adds the 64 MiB mmap threshold the figures on
docs/backbones/mmgcn.md were measured with; ``PROBE_HUGE_PAGES=0`` turns huge pages off). ``train``: the model is built as ``cliper train`` builds it
(random_run: packaged defaults, seeded 4096/384 features); a second MMGCN is built from an
older ``mmgcn.py`` (``--old``, another checkout's file) on the same context and given the same
weights, and both run forward + backward on the same trainer batches, alternately, ``--reps``
times (no optimiser step, so both stay on the same weights): median process CPU and wall
seconds per step, page faults per step, and whether loss and gradients agree (bitwise and
max |diff|). ``--precision bf16`` runs the steps under CPU autocast, as the trainer does.
CAUTION: sharing one heap, the two models' page faults are not those
of a fresh process (glibc trims the heap top past the 64 MiB cap, and which model's
temporaries land there decides who faults): the CPU ratio flattered the new code (0.79 here
against 0.93 in fresh processes); the equality checks are what this mode is for.
``step``: the model on PYTHONPATH alone, ``--steps`` trainer steps (forward, backward,
Adam) in a fresh process, median CPU / wall / faults; ``PROBE_CAP_MIB`` sets the trim cap.
``precision``: the new model's fp32 steps against its bf16-autocast ones
on the same batches. ``eval``: ``score_embeddings()`` (the representation) timed apart from the ranking (the
valid pass's chunks: matmul, train mask, top-50, bench_models.py's ``bare`` operations) and
from the whole ``Evaluator.evaluate``, for both models.

    python benchmarks/probe_mmgcn.py train --reps 5 --old OLD/src/cliper/models/mmgcn.py
    PYTHONPATH=OLD_TREE/src python benchmarks/probe_mmgcn.py step   # then with this tree: fresh processes
    python benchmarks/probe_mmgcn.py precision --reps 5 --old OLD/src/cliper/models/mmgcn.py
    python benchmarks/probe_mmgcn.py eval --reps 3 --old OLD/src/cliper/models/mmgcn.py
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import statistics
import sys
import time

from cliper.runtime import cap_freed_memory, use_huge_pages

cap_freed_memory(int(os.environ.get("PROBE_CAP_MIB", "64")))  # M_TRIM_THRESHOLD (the freed-memory cap)
# the figures on docs/backbones/mmgcn.md ran with a 64 MiB mmap threshold (PROBE_MMAP_MIB=64 repeats them);
# cliper train keeps glibc's 32 MiB and uses torch's huge pages (runtime.huge_pages), the default here
if os.environ.get("PROBE_MMAP_MIB"):
    ctypes.CDLL("libc.so.6").mallopt(-3, int(os.environ["PROBE_MMAP_MIB"]) << 20)  # M_MMAP_THRESHOLD
use_huge_pages(os.environ.get("PROBE_HUGE_PAGES", "1") == "1")


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def step(model, batch, autocast):
    import torch

    model.zero_grad(set_to_none=True)
    c, t, f = time.process_time(), time.perf_counter(), faults()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model.calculate_loss(batch)
    loss.backward()
    return (time.process_time() - c, time.perf_counter() - t, faults() - f, loss.detach(),
            {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from random_run import other_tree_class, random_run

    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["train", "eval", "precision", "step"])
    ap.add_argument("--steps", type=int, default=14, help="step mode: trainer steps timed (the first 2 dropped)")
    ap.add_argument("--old", help="train mode: the other tree's src/cliper/models/mmgcn.py (e.g. a git worktree of main)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.mode == "step":  # the model on PYTHONPATH alone, as cliper train steps it
        with random_run("baby", "mmgcn") as run:
            model, trainer = run.model, run.trainer
            model.train()
            model.pre_epoch_hook(1)
            res = {"cpu": [], "wall": [], "faults": []}
            for i, batch in enumerate(trainer.batches(1)):
                if i == args.steps:
                    break
                c, t, f = time.process_time(), time.perf_counter(), faults()
                trainer.train_step(batch, 1)
                for k, v in (("cpu", time.process_time() - c), ("wall", time.perf_counter() - t), ("faults", faults() - f)):
                    res[k].append(v)
            import cliper.models.mmgcn as code

            print(json.dumps({"mode": "step", "code": code.__file__, "trim_cap_mib": os.environ.get("PROBE_CAP_MIB", "64"),
                              **{k: round(statistics.median(v[2:]), 4) for k, v in res.items()},
                              "loadavg": os.getloadavg()}))
        return
    if not args.old:
        raise SystemExit(f"{args.mode} mode compares against --old OTHER/src/cliper/models/mmgcn.py")
    with random_run("baby", "mmgcn") as run:
        new = run.model
        old = other_tree_class(args.old, "MMGCN", "mmgcn_old")(new.ctx, new.params)
        old.load_state_dict(new.state_dict())
        models = {"old": old, "new": new}
        out = {"mode": args.mode, "threads": torch.get_num_threads(), "precision": args.precision,
               "loadavg_before": os.getloadavg()}
        if args.mode == "precision":  # the new model alone, fp32 steps against bf16-autocast steps
            batches = iter(run.trainer.batches(1))
            res = {k: {"cpu": [], "wall": [], "faults": []} for k in ("fp32", "bf16")}
            losses = {"fp32": [], "bf16": []}
            new.train()
            for rep in range(args.reps + 1):
                batch = next(batches)
                for name in (("fp32", "bf16") if rep % 2 == 0 else ("bf16", "fp32")):
                    got = step(new, batch, name == "bf16")
                    if rep:
                        for i, m in enumerate(("cpu", "wall", "faults")):
                            res[name][m].append(got[i])
                        losses[name].append(float(got[3]))
            for k in res:
                out[k] = {m: round(statistics.median(v), 4) for m, v in res[k].items()}
            out["cpu_ratio_bf16_over_fp32"] = round(out["bf16"]["cpu"] / out["fp32"]["cpu"], 3)
            out["max_abs_loss_diff"] = max(abs(a - b) for a, b in zip(losses["fp32"], losses["bf16"]))
        elif args.mode == "train":
            batches = iter(run.trainer.batches(1))
            res = {k: {"cpu": [], "wall": [], "faults": []} for k in models}
            same_loss, same_grads, max_diff = True, True, 0.0
            for rep in range(args.reps + 1):  # the first round warms up
                batch = next(batches)
                got = {}
                for name in (("old", "new") if rep % 2 == 0 else ("new", "old")):
                    models[name].train()
                    got[name] = step(models[name], batch, args.precision == "bf16")
                if rep == 0:
                    continue
                for k in models:
                    res[k]["cpu"].append(got[k][0])
                    res[k]["wall"].append(got[k][1])
                    res[k]["faults"].append(got[k][2])
                same_loss &= bool(torch.equal(got["old"][3], got["new"][3]))
                go, gn = got["old"][4], got["new"][4]
                same_grads &= go.keys() == gn.keys() and all(torch.equal(go[n], gn[n]) for n in go)
                max_diff = max([max_diff] + [float((go[n] - gn[n]).abs().max() / go[n].abs().max().clamp_min(1e-30))
                                             for n in go])
            for k in models:
                out[k] = {m: round(statistics.median(v), 4) for m, v in res[k].items()}
            out["cpu_ratio_new_over_old"] = round(out["new"]["cpu"] / out["old"]["cpu"], 3)
            out["bitwise_equal_loss"], out["bitwise_equal_grads"] = same_loss, same_grads
            out["max_rel_grad_diff"] = max_diff
        else:
            from bench_models import bare_eval_ops

            ev, data = run.evaluator, run.data
            res = {k: {"score_embeddings": [], "evaluate": [], "score_embeddings_cpu": [], "evaluate_cpu": []}
                   for k in models}
            bare, bare_cpu = [], []
            for rep in range(args.reps + 1):
                for name in (("old", "new") if rep % 2 == 0 else ("new", "old")):
                    m = models[name]
                    m.train()
                    m.eval()  # clears the evaluation cache
                    t, c = time.perf_counter(), time.process_time()
                    with torch.no_grad():
                        m.score_embeddings()
                    rep_s, rep_c = time.perf_counter() - t, time.process_time() - c
                    m.train()
                    t, c = time.perf_counter(), time.process_time()
                    ev.evaluate(m, "valid")  # the representation again + the ranking + metrics
                    ev_s, ev_c = time.perf_counter() - t, time.process_time() - c
                    if rep:
                        for key, v in (("score_embeddings", rep_s), ("evaluate", ev_s),
                                       ("score_embeddings_cpu", rep_c), ("evaluate_cpu", ev_c)):
                            res[name][key].append(v)
                c = time.process_time()
                b = bare_eval_ops(ev, data.n_users, data.n_items)
                if rep:
                    bare.append(b)
                    bare_cpu.append(time.process_time() - c)
            out["bare_s"] = round(statistics.median(bare), 4)
            out["bare_cpu_s"] = round(statistics.median(bare_cpu), 4)
            for k in models:
                out[k] = {m: round(statistics.median(v), 4) for m, v in res[k].items()}
                out[k]["x_bare"] = round(out[k]["evaluate"] / out["bare_s"], 3)
                out[k]["x_bare_cpu"] = round(out[k]["evaluate_cpu"] / out["bare_cpu_s"], 3)
            with torch.no_grad():
                uo, io = old.score_embeddings()
                un, in_ = new.score_embeddings()
            out["bitwise_equal_embeddings"] = bool(torch.equal(uo, un) and torch.equal(io, in_))
            out["max_abs_diff"] = float(max((uo - un).abs().max(), (io - in_).abs().max()))
        out["loadavg_after"] = os.getloadavg()
        print(json.dumps(out))


if __name__ == "__main__":
    main()
