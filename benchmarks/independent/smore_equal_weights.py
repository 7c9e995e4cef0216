"""Formula-level check of cliper's SMORE against the independent one (``smore.py``): build both
on the same inputs, copy cliper's initial weights into the independent model, and compare the
item-item graphs, the behaviour and side embeddings (eval mode: no dropout), the loss of one
batch and its gradients. Run after the side-by-side, to tell a formula difference from a
training-loop or seed difference:

    python benchmarks/independent/smore_equal_weights.py --dataset /tmp/sbs/demo
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import harness  # noqa: E402
import smore  # noqa: E402


def copy_weights(cm, im) -> None:
    """cliper's SMORE parameters (``cm``) into the independent model (``im``)."""
    with torch.no_grad():
        im.user_emb.copy_(cm.user_embedding.weight)
        im.item_emb.copy_(cm.item_embedding.weight)
        pairs = [(im.image_proj, cm.projections["image"]), (im.text_proj, cm.projections["text"]),
                 (im.q_img, cm.queries["image"]), (im.q_txt, cm.queries["text"])]
        for mine, key in ((im.g_v, "image"), (im.g_t, "text"), (im.g_f, "fusion")):
            pairs.append((mine, cm.item_gates[key]))
        for mine, key in ((im.p_v, "image"), (im.p_t, "text"), (im.p_f, "fusion")):
            pairs.append((mine, cm.preference_gates[key]))
        for mine, theirs in pairs:
            mine.load_state_dict(theirs.state_dict())
        for mine, key in ((im.w_img, "image"), (im.w_txt, "text"), (im.w_fus, "fusion")):
            mine.copy_(cm.filters[key])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="/tmp/sbs/demo")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from cliper.config.loader import load_config
    from cliper.models.base import Batch
    from cliper.training.runner import build_features, build_model, load_dataset

    inp = harness.load_inputs(args.dataset, "svd", 512, 384)
    with tempfile.TemporaryDirectory() as tmp:
        feats = harness.feature_overrides(inp, Path(tmp))
        cfg = load_config(overrides=[f"dataset.path={args.dataset}", "model.name=smore", f"seed={args.seed}", *feats])
        data = load_dataset(cfg)
        cm = build_model(cfg, data, build_features(cfg, data.n_items), torch.device("cpu"))
    im = smore.Model(inp, args.seed)
    worst = {}
    for v, g in (("image", im.g_img), ("text", im.g_txt), ("fusion", im.g_fus)):
        a, b = cm.item_graph_matrices[v].toarray(), g.to_dense().numpy()
        worst[f"{v} graph"] = float(np.abs(a - b).max())
    copy_weights(cm, im)
    cm.eval()
    im.eval()
    with torch.no_grad():
        _, _, side, beh = cm.propagate()
        _, side2, beh2 = im.forward()
    worst["behaviour"] = float((beh - beh2).abs().max())
    worst["side"] = float((side - side2).abs().max())
    g = torch.Generator().manual_seed(0)
    u, p, n = (torch.randint(0, size, (args.batch,), generator=g) for size in (inp.n_users, inp.n_items, inp.n_items))
    lc, li = cm.calculate_loss(Batch(u, p, n)), im.loss(u, p, n)
    worst["loss"] = abs(lc.item() - li.item())
    lc.backward()
    li.backward()
    grads = {"user": (im.user_emb, cm.user_embedding.weight), "item": (im.item_emb, cm.item_embedding.weight),
             "fusion filter": (im.w_fus, cm.filters["fusion"]), "image projection": (im.image_proj.weight,
                                                                              cm.projections["image"].weight)}
    for k, (a, b) in grads.items():
        worst[f"grad {k} (rel)"] = float((a.grad - b.grad).abs().max() / b.grad.abs().max())
    print(f"loss {lc.item():.7f} (cliper) {li.item():.7f} (independent)")
    for k, v in worst.items():
        print(f"max |difference| {k}: {v:.3g}")


if __name__ == "__main__":
    main()
