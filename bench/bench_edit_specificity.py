"""How specific shape edits are: what else they change, against random steps of the same length
(not a test).

    OMP_NUM_THREADS=2 python bench/bench_edit_specificity.py --load-config MAPPER_RUN/config.yml \
        [--objects 20] [--ridges 0 0.3 1 3] [--holds 5]

Each binary shape test of the run's prompt library is applied (shape only) to the first
`--objects` held-out chairs. Prints, by the attribute judge on the judged view:

- the share of the other shape answers (those that apply before and after) the edit keeps, next
  to the same share for a step of the same length along a random direction drawn from the mapper
  objects' code covariance, and for half that step: an edit no more specific than a random step
  of its length keeps what the random step keeps;
- for a read shape mapper, per `--ridges` value r, the flip rate per judge question and the
  answers kept when the step follows (Sigma + r I) a instead of Sigma a (r = 0: the mapper as it
  is; large r: towards the shortest step, straight along the score's gradient a);
- per `--holds` value h, the same for a step that holds the predicted scores of the library's
  other shape prompts with weight h (`editing.mappers.held_step`: InterFaceGAN's conditional
  manipulation, Shen et al. 2020, as a soft constraint); the ridges run at the run's own hold.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tyro

from clipnerf_ns.app.edit_evaluation import judged_shape, other_questions
from clipnerf_ns.codes import Codes
from clipnerf_ns.data.attributes import applies_judged
from clipnerf_ns.editing.edit import Edit, editor_for
from clipnerf_ns.editing.prompts import load_prompt_library
from clipnerf_ns.eval.judge import Judge
from clipnerf_ns.pipelines.runs import load_run


@dataclass
class Args:
    load_config: Path
    """config.yml of a mapper run (ns-train clip-nerf-mappers)."""
    objects: int = 20
    """Held-out chairs edited (the first this many)."""
    ridges: list[float] = field(default_factory=lambda: [0.0, 0.3, 1.0, 3.0])
    """Ridges r of the read mapper's step (Sigma + r I) a (ignored for a trained shape mapper)."""
    holds: list[float] = field(default_factory=list)
    """Weights h of the held step (see the module docstring; ignored for a trained shape mapper)."""
    seed: int = 0
    """Seed of the random directions."""


def kept(before: dict, after: dict, asked: str) -> tuple[int, int]:
    """(answers kept, answers compared) among the shape questions other than `asked` that apply
    before and after."""
    others = other_questions(before, asked, before, after)
    return sum(before[q] == after[q] for q in others), len(others)


def specificity(nerf, editor, judge, tests, held, answers, seed: int) -> dict[str, float]:
    """Answers kept by the edits, by random steps of their length and by half those steps."""
    mapper_codes = nerf.shape_codes.weight.detach()[: held[0]]
    root = torch.linalg.cholesky(torch.cov(mapper_codes.T) + 1e-6 * torch.eye(mapper_codes.shape[1]))
    generator = torch.Generator().manual_seed(seed)
    totals = defaultdict(lambda: [0, 0])
    for i in held:
        codes = nerf.object_codes(torch.tensor(i)).detach()
        for test in tests:
            step = editor.apply(Edit(prompt=test.prompt, target="shape"), codes).z_s - codes.z_s
            draw = root @ torch.randn(step.shape[0], generator=generator)
            draw = draw * step.norm() / draw.norm()
            for name, change in (("edit", step), ("random step", draw), ("half random step", 0.5 * draw)):
                after = judged_shape(nerf, judge, Codes(codes.z_s + change, codes.z_a))
                same, compared = kept(answers[i], after, test.question)
                totals[name][0] += same
                totals[name][1] += compared
    return {name: same / max(compared, 1) for name, (same, compared) in totals.items()}


def step_sweep(nerf, editor, judge, tests, held, answers, read, ridge: float, hold: float) -> dict:
    """Flip rate per judge question and answers kept with the read mapper's step (Sigma + r I) a,
    holding the library's other prompts with weight `hold` (`editing.mappers.held_step`)."""
    sigma, shipped_hold = read.covariance.clone(), read.hold
    read.covariance.copy_(sigma + ridge * torch.eye(sigma.shape[0]))
    read.hold = hold
    flips, totals = defaultdict(lambda: [0, 0]), [0, 0]
    try:
        for i in held:
            codes = nerf.object_codes(torch.tensor(i)).detach()
            for test in tests:
                if not applies_judged(test.question, answers[i]):
                    continue
                after = judged_shape(nerf, judge, editor.apply(Edit(prompt=test.prompt, target="shape"), codes))
                if answers[i][test.question] != test.answer:
                    flips[test.question][0] += after[test.question] == test.answer
                    flips[test.question][1] += 1
                same, compared = kept(answers[i], after, test.question)
                totals[0] += same
                totals[1] += compared
    finally:
        read.covariance.copy_(sigma)
        read.hold = shipped_hold
    rates = {q: round(hit / count, 2) for q, (hit, count) in flips.items() if count}
    return {"ridge": ridge, "hold": hold, "mean_flip": round(sum(rates.values()) / len(rates), 3),
            "kept": round(totals[0] / max(totals[1], 1), 3), "flip_per_question": rates}


def main(args: Args) -> None:
    start = time.perf_counter()
    _, pipeline = load_run(args.load_config)
    model, judge = pipeline.model, Judge.load(None)
    nerf, editor = model.nerf, editor_for(model)
    library = load_prompt_library(model.config.prompts, nerf.category)
    tests = [t for t in library.tests if not t.question.endswith("_color")]
    held = model.heldout[: args.objects]
    answers = {i: judged_shape(nerf, judge, nerf.object_codes(torch.tensor(i)).detach()) for i in held}
    with torch.no_grad():
        shares = specificity(nerf, editor, judge, tests, held, answers, args.seed)
        print("other shape answers kept: " + ", ".join(f"{name} {share:.3f}" for name, share in shares.items()))
        if model.mappers.shape_is_read:
            read = model.mappers.shape
            if args.holds and not read.held.abs().sum():  # read before held prompts existed: the library's, as a fit now sets them
                read.held = torch.cat([editor.embed(Edit(prompt=p, target="shape")) for p in library.shape]) - read.sources[0]
            for ridge, hold in [(r, read.hold) for r in args.ridges] + [(0.0, h) for h in args.holds]:
                print(json.dumps(step_sweep(nerf, editor, judge, tests, held, answers, read, ridge, hold)))
    print(f"{len(held)} held-out objects, {len(tests)} shape tests, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(tyro.cli(Args))
