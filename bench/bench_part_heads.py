"""EXPERIMENT (removed in the next commit): part colour heads on `compact`'s image embedding.

    OMP_NUM_THREADS=2 python bench/bench_part_heads.py --out heads.safetensors [--chairs 500]

Renders `--chairs` procedural chairs with backs (seed 6000) twice each, seat, back and legs in
independent named colours (arms as the seat), from 2 random views all around; fits a 12-way
softmax regression per part (seat, back, legs) on the standardised image embeddings of 80% of
the renders and prints its accuracy on the rest; writes the heads (folded back to act on the raw
embedding) for `--pipeline.model.loss.keep-parts-heads`.
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from bench_part_colours import chairs_with_backs, painted  # the bench's folder
from safetensors.torch import save_file

from clipnerf_ns.clip.domain_data import framing_of, over_white, render_views
from clipnerf_ns.clip.encoder import ClipConfig, ClipEncoder
from clipnerf_ns.data.synth_parts import NAMED_COLORS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--chairs", type=int, default=500)
    args = parser.parse_args()
    encoder, names, rng = ClipEncoder.load(ClipConfig()), list(NAMED_COLORS), np.random.default_rng(11)
    features, labels, start = [], [], time.perf_counter()
    for index, chair in chairs_with_backs(6000, args.chairs):
        for k in range(2):
            s, b, legs = rng.choice(names, 3, replace=True)
            mesh = painted(chair, {"seat": s, "back": b, "base": legs, "arms": s}, s)
            rgba = render_views(mesh, "chairs", np.random.default_rng([index, k]), 2, encoder.image_size, "all",
                                framing_of(encoder, "chairs"))
            with torch.no_grad():
                features.append(encoder.encode_image(over_white(rgba)))
            labels += [[names.index(s), names.index(b), names.index(legs)]] * len(rgba)
    x, y = torch.cat(features).float(), torch.tensor(labels)
    cut = int(len(x) * 0.8)
    mean, std = x[:cut].mean(0), x[:cut].std(0)
    z = (x - mean) / std
    weights, bias = torch.zeros(3, 12, x.shape[1], requires_grad=True), torch.zeros(3, 12, requires_grad=True)
    optimizer = torch.optim.Adam([weights, bias], lr=0.01)
    for _ in range(1500):
        optimizer.zero_grad()
        logits = torch.einsum("nd,pcd->npc", z[:cut], weights) + bias
        (sum(F.cross_entropy(logits[:, p], y[:cut, p]) for p in range(3)) + 1e-3 * weights.pow(2).sum()).backward()
        optimizer.step()
    with torch.no_grad():
        logits = torch.einsum("nd,pcd->npc", z[cut:], weights) + bias
        print("held-out accuracy, seat / back / legs:", [round(float((logits[:, p].argmax(-1) == y[cut:, p]).float().mean()), 3)
                                                         for p in range(3)], f"({time.perf_counter() - start:.0f} s)")
        save_file({"weights": (weights / std).contiguous(), "bias": bias - torch.einsum("pcd,d->pc", weights, mean / std)}, args.out)


if __name__ == "__main__":
    main()
