"""The dense-product floor of VBPR's and SLMRec's training batches: ``torch.mm`` of their shapes at
1 thread, fp32 and bf16, median process CPU time, and the GFLOP/s that gives.

Shapes (Baby, batch 2048, 4096-d image + 384-d text): VBPR projects the batch's ~2870 distinct
items (forward X E^T and weight gradient G^T X per modality); SLMRec projects ~3370 batch rows
(split propagation) and computes three in-batch InfoNCE logits [2048, 2048] at widths 64, 64 and 32
(forward plus two gradient products each). fp32 is timed twice: MKL's ``torch.mm`` and the
products cliper runs (``fused_ops.matmul_nt`` / ``weight_grad``: oneDNN where it is faster).

    python benchmarks/probe_gemm_floor.py --vbpr-rows 2870 --slmrec-rows 3370
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vbpr-rows", type=int, default=2870)
    ap.add_argument("--slmrec-rows", type=int, default=3370)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    import torch

    from cliper.models import fused_ops

    torch.set_num_threads(1)
    torch.manual_seed(0)

    def fused(a, b):
        """``a @ b`` as cliper computes it: a weight gradient (``a`` = grad.T) by weight_grad,
        anything else by matmul_nt."""
        if a.shape[0] < a.shape[1] and b.shape[1] > b.shape[0]:  # [d, rows] x [rows, k]
            return fused_ops.weight_grad(a.T, b)
        return fused_ops.matmul_nt(a, b.T)

    def timed(a, b, op=torch.mm) -> float:
        op(a, b)
        ts = []
        for _ in range(args.reps):
            t = time.process_time()
            op(a, b)
            ts.append(time.process_time() - t)
        return statistics.median(ts)

    def shapes(rows: int, dims=(4096, 384), d: int = 64):
        out = []
        for k in dims:
            out += [((rows, k), (k, d)), ((d, rows), (rows, k))]  # forward, weight gradient
        return out

    b = args.batch
    nce = []
    for w in (64, 64, 32):
        nce += [((b, w), (w, b)), ((b, b), (b, w)), ((b, b), (b, w))]
    result = {}
    for name, shp in (("vbpr", shapes(args.vbpr_rows)), ("slmrec_projection", shapes(args.slmrec_rows)),
                      ("slmrec_infonce", nce)):
        for label, dtype, op in (("float32_mkl", torch.float32, torch.mm), ("float32_cliper", torch.float32, fused),
                                 ("bfloat16", torch.bfloat16, torch.mm)):
            total_s, flops = 0.0, 0
            for sa, sb in shp:
                x, y = torch.randn(sa).to(dtype), torch.randn(sb).to(dtype)
                total_s += timed(x, y, op)
                flops += 2 * sa[0] * sa[1] * sb[1]
            result[f"{name}_{label}"] = {
                "gflop_per_batch": round(flops / 1e9, 2), "ms_per_batch": round(1e3 * total_s, 1),
                "gflop_s": round(flops / total_s / 1e9, 1)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
