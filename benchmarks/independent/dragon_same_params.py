"""Formula-level check: cliper's DRAGON and the independent one (``dragon.py``) with the SAME parameters.

    python benchmarks/independent/dragon_same_params.py --dataset /tmp/sbs/demo [--features svd]

Builds cliper's model through ``cliper train``'s path (packaged defaults) and the independent model
on the same arrays, copies cliper's parameters into the independent one, then compares the item-item
and user-user graphs, the propagated user/item embeddings, the loss of one batch and every gradient.
Exits 1 when any max |difference| exceeds ``--tol``. Written after the first side-by-side result
(the two implementations were written apart); this file, not ``dragon.py``, imports cliper.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dragon as independent  # noqa: E402
import harness  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--features", choices=["svd", "random"], default="svd")
    ap.add_argument("--image-dim", type=int, default=512)
    ap.add_argument("--text-dim", type=int, default=384)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from cliper.config.loader import load_config
    from cliper.models.base import Batch
    from cliper.training.runner import build_features, build_model, load_dataset

    inputs = harness.load_inputs(args.dataset, args.features, args.image_dim, args.text_dim)
    tmp = Path(tempfile.mkdtemp())
    feats = harness.feature_overrides(inputs, tmp)
    cfg = load_config(overrides=[f"dataset.path={args.dataset}", "model.name=dragon", f"seed={args.seed}",
                                 "train.checkpoint=false", *feats])
    data = load_dataset(cfg)
    ours = build_model(cfg, data, build_features(cfg, data.n_items), torch.device("cpu"))
    ref = independent.Model(inputs, args.seed)
    if list(ours.modal) != ref.mods:
        raise SystemExit(f"modality order differs: {ours.modal} vs {ref.mods}")

    diffs = {}
    diffs["item-item graph"] = float(np.abs(sp.csr_matrix(ours._build_item_graph()).toarray()
                                            - ref.mm_adj.to_dense().numpy()).max())
    diffs["user-user graph"] = float(np.abs(sp.csr_matrix(ours.user_graph_matrix).toarray()
                                            - ref.user_graph.to_dense().numpy()).max())
    pairs = []  # (name, cliper parameter, independent parameter, reshape of the independent one)
    for m in ref.mods:
        e = ours.encoders[m]
        pairs += [(f"{m} preference", e.preference, ref.pref[m], None),
                  (f"{m} mlp1.weight", e.mlp_in.weight, ref.mlp1[m].weight, None),
                  (f"{m} mlp1.bias", e.mlp_in.bias, ref.mlp1[m].bias, None),
                  (f"{m} mlp2.weight", e.mlp_out.weight, ref.mlp2[m].weight, None),
                  (f"{m} mlp2.bias", e.mlp_out.bias, ref.mlp2[m].bias, None)]
    if ref.weight_u is not None:
        pairs.append(("fusion weights", ours.user_modality_weight, ref.weight_u, (-1, 2)))
    with torch.no_grad():
        for _, a, b, shape in pairs:
            b.copy_(a.reshape(b.shape))
        (cu, ci), (iu, ii) = ours.propagate(), ref.propagate()
    diffs["user embeddings"] = float((cu - iu).abs().max())
    diffs["item embeddings"] = float((ci - ii).abs().max())
    g = torch.Generator().manual_seed(args.seed)
    u = torch.randint(0, inputs.n_users, (512,), generator=g)
    p, n = (torch.randint(0, inputs.n_items, (512,), generator=g) for _ in range(2))
    lc, li = ours.calculate_loss(Batch(users=u, pos_items=p, neg_items=n)), ref.loss(u, p, n)
    diffs["batch loss"] = abs(lc.item() - li.item())
    lc.backward()
    li.backward()
    for name, a, b, shape in pairs:
        gb = b.grad if shape is None else b.grad.reshape(shape)
        diffs[f"grad {name}"] = float((a.grad - gb).abs().max() / (a.grad.abs().max() + 1e-30))
    print(f"loss cliper {lc.item():.6f} independent {li.item():.6f}")
    for k, v in diffs.items():
        print(f"  max |diff| {k:24s} {v:.2e}" + ("  (relative)" if k.startswith("grad") else ""))
    bad = [k for k, v in diffs.items() if not v <= args.tol]
    if bad:
        print(f"MISMATCH beyond {args.tol:g}: {', '.join(bad)}")
        return 1
    print(f"all within {args.tol:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
