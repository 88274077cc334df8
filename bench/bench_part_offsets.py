"""Can one appearance offset per prompt recolour a part alone? Measured against the attribute judge (not a test).

    OMP_NUM_THREADS=2 python bench/bench_part_offsets.py --load-config MAPPER_RUN/config.yml \
        [--objects 8] [--steps 30] [--edits seat:red back:red seat:blue base:black]

The appearance mapper turns a prompt into one change of the appearance code, the same for every
object. This bench asks whether such a change can exist for a part colour edit ("the seat red,
the rest as it was") by searching for it with the best possible guide: the attribute judge
itself, which no edit may use. For each `--edits` part:colour, the appearance code is optimised
(Adam, `--steps` steps) so that the judge reads the part in the colour and every other part's
colour as before, on the judged view:

- per object: each of the first `--objects` held-out chairs gets its own change;
- shared: one change, optimised on the first `--objects` mapper chairs at once, then applied to
  the held-out chairs, as a mapper's output would be.

Prints, per edit and pooled, the share of the chairs whose part the judge then reads in the colour
(among those where it did not already) and the share of the other parts' colour answers kept
(`app.edit_evaluation.part_colour_verdicts`, as `clipnerf eval` counts them). An optimisation
against the scorer itself is an upper bound: if the shared change cannot keep the other parts
even so, no mapper that sees only the prompt can.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import tyro

from clipnerf_ns.app.edit_evaluation import first_answers, judged_view, part_colour_verdicts
from clipnerf_ns.app.prompt_meanings import PART_COLOUR_QUESTIONS
from clipnerf_ns.codes import Codes
from clipnerf_ns.data.attributes import applies_judged
from clipnerf_ns.data.synth_parts import NAMED_COLORS
from clipnerf_ns.eval.judge import Judge, preprocess
from clipnerf_ns.pipelines.runs import load_run


@dataclass
class Args:
    load_config: Path
    """config.yml of a mapper run (ns-train clip-nerf-mappers): its held-out and mapper chairs are edited."""
    objects: int = 8
    """Held-out chairs edited, and mapper chairs the shared change is optimised on."""
    steps: int = 30
    """Adam steps of each optimisation."""
    lr: float = 0.1
    """Adam's step size (the appearance code's entries are of order 0.1 to 1)."""
    edits: list[str] = field(default_factory=lambda: ["seat:red", "back:red", "seat:blue", "base:black"])
    """part:colour edits (parts: seat, back, base, arms; colours: the judge's colour names)."""


class JudgedColours:
    """The judge's colour questions on the judged view of a NeRF's codes, differentiable in the codes."""

    def __init__(self, nerf, judge: Judge):
        self.nerf, self.judge = nerf, judge
        self.names = {q: list(a) for q, a in judge.questions[nerf.category]}

    def view(self, codes: Codes) -> torch.Tensor:
        return judged_view(self.nerf, codes, self.judge.image_size, self.judge.frame_extent(self.nerf.category))

    def logits(self, codes: Codes) -> dict[str, torch.Tensor]:
        features = self.judge.net.features(preprocess(self.view(codes), self.judge.image_size))
        return {q: self.judge.net.logits(features, self.nerf.category, q)[0] for q in self.names}

    def answers(self, codes: Codes) -> dict[str, str]:
        with torch.no_grad():
            return first_answers(self.judge.answers(self.view(codes), self.nerf.category))

    def loss(self, codes: Codes, question: str, colour: str, before: dict) -> torch.Tensor:
        """Cross-entropy of the part in `colour` and of every other applicable part as `before`."""
        logits = self.logits(codes)
        wanted = {question: colour} | {q: before[q] for q in PART_COLOUR_QUESTIONS.values()
                                       if q != question and q in before and applies_judged(q, before)}
        return sum(F.cross_entropy(logits[q][None], torch.tensor([self.names[q].index(a)])) for q, a in wanted.items())


def optimised_change(judged: JudgedColours, chairs: list[tuple[Codes, dict]], question: str, colour: str, args: Args):
    """One appearance change minimising the judge's loss summed over `chairs` ((codes, answers before))."""
    change = torch.zeros_like(chairs[0][0].z_a, requires_grad=True)
    optimizer = torch.optim.Adam([change], lr=args.lr)
    for _ in range(args.steps):
        optimizer.zero_grad()
        sum(judged.loss(Codes(c.z_s, c.z_a + change), question, colour, b) for c, b in chairs).backward()
        optimizer.step()
    return change.detach()


def tally(counts: list[int], verdict: dict) -> None:
    """Adds one edit's verdict to [recoloured, lacking before, others kept, others compared]."""
    if not verdict["part_has_before"]:
        counts[0] += verdict["part_has_after"]
        counts[1] += 1
    counts[2] += len(verdict["part_others_compared"]) - len(verdict["part_others_changed"])
    counts[3] += len(verdict["part_others_compared"])


def main(args: Args) -> None:
    start = time.perf_counter()
    edits = [parsed_edit(edit) for edit in args.edits]  # before the run loads: a typo stops at once
    _, pipeline = load_run(args.load_config)
    nerf = pipeline.model.nerf
    judged = JudgedColours(nerf, Judge.load(None))

    def chairs(indices: list[int], question: str) -> list[tuple[Codes, dict]]:
        """(codes, the judge's answers) of the objects whose part `question` asks of exists."""
        codes = [nerf.object_codes(torch.tensor(i)).detach() for i in indices]
        out = [(c, judged.answers(c)) for c in codes]
        return [(c, b) for c, b in out if applies_judged(question, b)]  # a stool has no back to colour

    pooled = {"per object": [0] * 4, "shared": [0] * 4}
    for edit, (part, colour) in zip(args.edits, edits):
        question = PART_COLOUR_QUESTIONS[part]
        held = chairs(pipeline.model.heldout[: args.objects], question)
        counts = {"per object": [0] * 4, "shared": [0] * 4}
        for codes, before in held:
            change = optimised_change(judged, [(codes, before)], question, colour, args)
            tally(counts["per object"], part_colour_verdicts(part, colour, (before, judged.answers(Codes(codes.z_s, codes.z_a + change)))))
        shared = optimised_change(judged, chairs(pipeline.model.mapper_objects[: args.objects], question), question, colour, args)
        for codes, before in held:
            tally(counts["shared"], part_colour_verdicts(part, colour, (before, judged.answers(Codes(codes.z_s, codes.z_a + shared)))))
        for kind, c in counts.items():
            pooled[kind] = [a + b for a, b in zip(pooled[kind], c)]
        print(json.dumps({"edit": edit, **{kind: rates(c) for kind, c in counts.items()}}), flush=True)
    print(json.dumps({"edit": "pooled", **{kind: rates(c) for kind, c in pooled.items()}}))
    print(f"{args.objects} chairs per set, {args.steps} steps, {time.perf_counter() - start:.0f} s")


def parsed_edit(edit: str) -> tuple[str, str]:
    """(part, colour) of a `--edits` entry such as "seat:red"; SystemExit with one line otherwise."""
    part, _, colour = edit.partition(":")
    if part not in PART_COLOUR_QUESTIONS or colour not in NAMED_COLORS:
        raise SystemExit(f"--edits {edit!r}: want part:colour, part one of {', '.join(PART_COLOUR_QUESTIONS)}, "
                         f"colour one of {', '.join(NAMED_COLORS)}")
    return part, colour


def rates(counts: list[int]) -> dict:
    return {"part recoloured": round(counts[0] / max(counts[1], 1), 2), "of": counts[1],
            "other parts kept": round(counts[2] / max(counts[3], 1), 2)}


if __name__ == "__main__":
    main(tyro.cli(Args))
