"""How the read shape mapper reads a prompt, and why it steps along the codes' covariance (not a test).

    OMP_NUM_THREADS=2 python bench/bench_read_mapper.py --load-config MAPPER_RUN/config.yml \
        [--objects 20] [--percentile 90]

For a mapper run with `--pipeline.model.shape-mapper read`, per binary test of its prompt library
(one prompt per judge question):

- ranking: over the run's held-out objects, the share of (has it, lacks it) pairs, by the judge's
  answers on their judged views, that the read regression orders right by the prompt's predicted
  score (1.0: a perfect reading, 0.5: chance);
- for the first `--objects` held-out objects that lack the attribute, the edit to the percentile
  with the mapper's step (the learnt codes' covariance times the score's gradient) and with the
  shortest step (straight along the gradient): the judge's flip rate, the share of the other
  shape answers kept, and the haze after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from clipnerf_ns.app.edit_evaluation import judged_shape, other_questions
from clipnerf_ns.codes import Codes
from clipnerf_ns.data.cameras import VIEW_DEG, orbit_camera
from clipnerf_ns.editing.mappers import read_shape_change
from clipnerf_ns.eval import metrics
from clipnerf_ns.eval.judge import Judge
from clipnerf_ns.pipelines.runs import load_run


@dataclass
class Args:
    load_config: Path
    """config.yml of a mapper run whose shape mapper is read."""
    objects: int = 20
    """Held-out objects edited (the first this many)."""
    percentile: float = 90.0
    """The read percentile of the edits compared here."""


def ranking(scores: np.ndarray, has: np.ndarray) -> float:
    """The share of (has, lacks) pairs that `scores` order right (ties count half)."""
    pos, neg = scores[has][:, None], scores[~has][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean()) if pos.size and neg.size else float("nan")


def main(args: Args) -> None:
    start = time.perf_counter()
    _, pipeline = load_run(args.load_config)
    model, judge = pipeline.model, Judge.load(None)
    nerf, read = model.nerf, model.mappers.shape
    if not model.mappers.shape_is_read:
        raise SystemExit(f"{args.load_config}: its shape mapper is trained, not read (--pipeline.model.shape-mapper read)")
    mean, std = nerf.code_prior()
    camera = orbit_camera(128, *VIEW_DEG, nerf.orbit)
    held = [nerf.object_codes(torch.tensor(i)).detach() for i in model.heldout]
    units = torch.stack([(c.z_s - mean.z_s) / std.z_s for c in held])
    answers = [judged_shape(nerf, judge, c) for c in held]
    steps = {"covariance": read.covariance, "shortest": torch.eye(read.covariance.shape[0])}
    print(f"{args.load_config}: {len(held)} held-out objects, edits of the first {args.objects} at percentile {args.percentile:g}\n")
    print(f"{'prompt':<36} {'ranking':>7} {'lacking':>7}" + "".join(f" | {k:>10} flip  kept  haze" for k in steps))
    seen = set()
    for test in model.library.tests:
        if test.question in seen:
            continue
        seen.add(test.question)
        direction = model.clip.encode_text([test.prompt]) - read.sources[0]
        scores = (units @ (direction @ read.code_to_clip.T)[0]).numpy()
        has = np.array([a[test.question] == test.answer for a in answers])
        lacking = [k for k in range(min(args.objects, len(held))) if not has[k]]
        row = f"{test.prompt[:36]:<36} {ranking(scores, has):>7.2f} {len(lacking):>7}"
        for covariance in steps.values():
            flips, kept, hazes = [], [], []
            for k in lacking:
                change = read_shape_change(units[k : k + 1], direction, read.code_to_clip, read.learnt, covariance, args.percentile)
                edited = Codes(held[k].z_s + change[0] * std.z_s, held[k].z_a)
                after = judged_shape(nerf, judge, edited)
                others = other_questions(after, test.question, answers[k], after)
                flips.append(after[test.question] == test.answer)
                kept += [after[q] == answers[k][q] for q in others]
                hazes.append(metrics.haze(nerf.render_view(camera, edited)["accumulation"]))
            figures = [np.mean(v) if v else float("nan") for v in (flips, kept)] + [np.nanmean(hazes) if hazes else float("nan")]
            row += f" | {'':>10} " + "  ".join(f"{x:.2f}" for x in figures)
        print(row, flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(tyro.cli(Args))
