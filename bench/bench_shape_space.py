"""How dense a clip-nerf run's shape space is: haze of its objects, of codes between them, and of
codes drawn from its prior (not a test).

    OMP_NUM_THREADS=2 python bench/bench_shape_space.py --load-config RUN/config.yml [--objects 16]
        [--pairs 16] [--draws 16] [--scales 0.5 1.5 2] [--picture strips.png]

Renders every code from the view `clipnerf eval` judges edits from (`cameras.VIEW_DEG`) and
prints the haze of each group (`metrics.haze`: the share of the object's pixels, opacity above
0.1, that are semi-transparent, below 0.9) and the share of the view the object covers (those
pixels; a space that clears its fog by decoding to nothing shows there):

- the run's own objects, with their learnt codes;
- the midpoints of random pairs of them (shape codes halfway, the first object's appearance):
  where a shape edit passes on its way from one object to another;
- for a space with attribute-tied dimensions, attribute swaps of random pairs (each tied attribute
  taken from the second object at a rate drawn per pair, the rest the first's; a random object's appearance):
  where a tied space's shape edits land (the read mapper keeps the attributes the prompt does not name);
- draws from the code prior (a diagonal Gaussian fit to the learnt codes), as the viewer's
  "prior sample" and `clipnerf eval --prior-objects` draw them;
- the same draws with their deviation scaled (`--scales`): haze against the distance from the
  prior's mean (last column, in prior deviations);
- for a mapper run, its shape edits of held-out objects, and the same edits pulled back to
  distance 1: whether edits land where the space is clean.

A shape space that is dense only near its training codes keeps the first group clean and fogs
the other two. `--picture` draws interpolation strips (one pair per row, t = 0 to 1) and a row of
prior draws.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import tyro
from PIL import Image

from clipnerf_ns.codes import Codes
from clipnerf_ns.data.cameras import VIEW_DEG, orbit_camera
from clipnerf_ns.data.images import to_uint8
from clipnerf_ns.editing.edit import apply_change
from clipnerf_ns.editing.mappers import prior_distance, pull_into_prior
from clipnerf_ns.eval.metrics import haze
from clipnerf_ns.models.attribute_codes import attribute_groups
from clipnerf_ns.pipelines.runs import load_run, nerf_of


@dataclass
class Args:
    load_config: Path
    """config.yml of a clip-nerf run or of a mapper run (its stage-1 field is measured)."""
    objects: int = 16
    """Learnt objects rendered (the first this many of the code table)."""
    pairs: int = 16
    """Random pairs of learnt objects whose shape-code midpoint is rendered."""
    draws: int = 16
    """Codes drawn from the code prior."""
    resolution: int = 96
    """Side of the renders (pixels), as `clipnerf eval` renders."""
    seed: int = 0
    """Seed of the pairs and the draws."""
    picture: Optional[Path] = None
    """Also draw interpolation strips of the first 4 pairs and a row of 8 prior draws into this PNG."""
    scales: tuple[float, ...] = (0.5, 1.5, 2.0)
    """Also draw from the prior with its deviation scaled by each of these (distance from its mean)."""


def mapper_edits(model, nerf, prior: tuple[Codes, Codes], count: int = 8) -> tuple[list[Codes], list[Codes]]:
    """Shape edits of a mapper model's first `count` held-out objects by every fifth shape prompt,
    and the same edits pulled back to distance 1 from the prior's mean where they lie further."""
    mean, std = prior[0].z_s, prior[1].z_s
    embeddings = model.prompt_embeddings["shape"][::5]
    edits, pulled = [], []
    for index in model.heldout[:count]:
        codes = nerf.object_codes(torch.tensor(index)).detach()
        batch = Codes(codes.z_s.expand(len(embeddings), -1), codes.z_a.expand(len(embeddings), -1))
        with torch.no_grad():
            z_s = apply_change(batch, "shape", model.mappers.change("shape", embeddings, batch, prior)).z_s
        for z in z_s:
            edits.append(Codes(z, codes.z_a))
            pulled.append(Codes(pull_into_prior(z, mean, std, 1.0), codes.z_a))
    return edits, pulled


def attribute_swaps(learnt: torch.Tensor, groups: list[list[int]], count: int, generator) -> torch.Tensor:
    """`count` shape codes mixing two random learnt codes attribute by attribute: each tied group
    taken from the second at a rate drawn uniformly per code, the free dimensions the first's."""
    pick = torch.randint(learnt.shape[0], (2, count), generator=generator)
    share = torch.rand(count, 1, generator=generator)
    taken_groups = torch.rand(count, len(groups), generator=generator) < share
    taken = torch.zeros(count, learnt.shape[1], dtype=torch.bool)
    for column, dims in enumerate(groups):
        taken[:, dims] = taken_groups[:, column : column + 1]
    return torch.where(taken, learnt[pick[1]], learnt[pick[0]])


def strip(nerf, camera, a: Codes, b: Codes, steps: int = 8) -> np.ndarray:
    """One row: the shape code going from a's to b's in `steps` steps, a's appearance throughout."""
    tiles = [to_uint8(nerf.render_view(camera, Codes(torch.lerp(a.z_s, b.z_s, t), a.z_a))["rgb"])
             for t in np.linspace(0.0, 1.0, steps)]
    return np.concatenate(tiles, axis=1)


def main(args: Args) -> None:
    start = time.perf_counter()
    _, pipeline = load_run(args.load_config)
    nerf = nerf_of(pipeline)
    camera = orbit_camera(args.resolution, *VIEW_DEG, nerf.orbit)
    generator = torch.Generator().manual_seed(args.seed)
    count = nerf.num_objects
    learnt = [nerf.object_codes(torch.tensor(i)).detach() for i in range(count)]
    pairs = [torch.randperm(count, generator=generator)[:2].tolist() for _ in range(args.pairs)]
    drawn = nerf.sample_prior(args.draws, generator)
    groups = {
        "learnt objects": learnt[: args.objects],
        "pair midpoints": [Codes(0.5 * (learnt[i].z_s + learnt[j].z_s), learnt[i].z_a) for i, j in pairs],
        "prior draws": [Codes(drawn.z_s[k], drawn.z_a[k]) for k in range(args.draws)],
    }
    tied = attribute_groups(getattr(nerf, "code_attribute_labels", []))
    if tied:
        first = [learnt[i] for i in torch.randint(count, (args.pairs,), generator=generator).tolist()]
        table = torch.stack([c.z_s for c in learnt])
        swapped = attribute_swaps(table, tied, args.pairs, generator)
        groups["attribute swaps"] = [Codes(z, c.z_a) for z, c in zip(swapped, first)]
    mean, std = nerf.code_prior()
    for scale in args.scales:
        groups[f"prior draws x{scale:g}"] = [Codes(mean.z_s + scale * (c.z_s - mean.z_s), c.z_a) for c in groups["prior draws"]]
    if hasattr(pipeline.model, "mappers"):
        groups["shape edits"], groups["edits pulled to 1"] = mapper_edits(pipeline.model, nerf, (mean, std))
    print(f"{args.load_config}: {count} objects, shape codes of {learnt[0].z_s.shape[0]} dims\n")
    print(f"{'codes':<18} {'n':>4} {'haze mean':>10} {'median':>8} {'max':>6} {'object px':>10} {'distance':>9}")
    renders = {}
    for name, codes in groups.items():
        renders[name] = [nerf.render_view(camera, c) for c in codes]
        values = np.array([haze(r["accumulation"]) for r in renders[name]])
        # the share of the view the object covers: a space that clears its fog by emptying shows here
        covered = np.mean([float((r["accumulation"] > 0.1).float().mean()) for r in renders[name]])
        distance = np.mean([float(prior_distance(c.z_s, mean.z_s, std.z_s)) for c in codes])
        print(f"{name:<18} {len(values):>4} {np.nanmean(values):>10.3f} {np.nanmedian(values):>8.3f} {np.nanmax(values):>6.3f}"
              f" {covered:>10.3f} {distance:>9.2f}")
    if args.picture:
        rows = [strip(nerf, camera, learnt[i], learnt[j]) for i, j in pairs[:4]]
        rows.append(np.concatenate([to_uint8(r["rgb"]) for r in renders["prior draws"][:8]], axis=1))
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.picture)
        print(f"\nwrote {args.picture}: interpolation strips (rows 1-4, t = 0 to 1), prior draws (row 5)")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(tyro.cli(Args))
