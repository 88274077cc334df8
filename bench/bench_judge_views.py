"""Benchmark: the attribute judge's and the CLIPs' accuracy from fixed view directions (not a test).

    OMP_NUM_THREADS=1 python bench/bench_judge_views.py [--judge FILE] [--objects 600] [--seed 1000]
        [--clips compact compact-eval FILE...]

Fresh procedural objects (`--seed`: no judge trained on it) rendered at the judge's input size,
framed as its training views were, from a few (azimuth, elevation) directions at the
collections' distance: straight ahead, 15 degrees off, the direction `clipnerf eval` judges from
(`cameras.VIEW_DEG`), its mirror, and the side. Then pairs of views of the same object, their
log-probabilities summed. Where a question's figure falls from one direction to another, the
attribute is edge-on there (a recline or a rear wing from straight ahead, a seat's width from
the side), which no judge can see.

Then, for each of `--clips`, the zero-shot choice of every binary test of the prompt libraries
(`bench_clip.py`'s tests) from each direction: balanced accuracy, and the recall of the prompt's
renders / of the opposite's, so that a figure of `bench_clip.py`'s random front views can be
split into what each direction shows; the recline test also split by back height.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from clipnerf_ns.clip.domain_data import framing_of, object_seed, over_white, render_framed
from clipnerf_ns.clip.domain_eval import binary_accuracy, embed_images
from clipnerf_ns.clip.encoder import SHIPPED_MODELS, ClipConfig, ClipEncoder
from clipnerf_ns.data.attributes import QUESTIONS
from clipnerf_ns.data.cameras import VIEW_DEG, orbit_pose
from clipnerf_ns.data.synth import sample_object
from clipnerf_ns.editing.prompts import load_prompt_library
from clipnerf_ns.eval.judge import Judge
from clipnerf_ns.progress import progress_bar

DISTANCE = 2.2  # the collections' camera distance
DIRECTIONS = [(0.0, VIEW_DEG[1]), (15.0, VIEW_DEG[1]), VIEW_DEG, (-VIEW_DEG[0], VIEW_DEG[1]), (90.0, VIEW_DEG[1])]
PAIRS = [(2, 0), (2, 1), (2, 3), (2, 4)]  # the judged view with each other one


def render_directions(category: str, objects: int, seed: int, size: int, framing: str) -> tuple[torch.Tensor, list[dict]]:
    """((objects * directions, size, size, 3) renders over white, attributes) of fresh objects."""
    cameras = np.stack([orbit_pose(DISTANCE, a, e) for a, e in DIRECTIONS])
    rgba, attributes = [], []
    with progress_bar() as progress:
        bar = progress.add_task(f"rendering {category}", total=objects, status="")
        for i in range(objects):
            obj = sample_object(category, np.random.default_rng(object_seed(seed, category, i)))
            rgba.append(render_framed(obj.mesh, category, cameras, size, framing))
            attributes.append(obj.attributes)
            progress.advance(bar)
    return over_white(np.stack(rgba)), attributes


def log_probabilities(judge: Judge, category: str, objects: int, seed: int) -> tuple[dict, list[dict]]:
    """({question: (objects, directions, answers) log-probabilities}, attributes) of fresh objects."""
    images, attributes = render_directions(category, objects, seed, judge.image_size, framing_of(judge, category))
    out: dict[str, list] = {}
    for k in range(0, len(images), 500):
        for question, p in judge.answer_probabilities(images[k : k + 500], category).items():
            out.setdefault(question, []).append(p.clamp_min(1e-6).log())
    return {q: torch.cat(v).reshape(objects, len(DIRECTIONS), -1) for q, v in out.items()}, attributes


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", default=None, help="attribute judge file (default: the shipped one)")
    parser.add_argument("--objects", type=int, default=600, help="fresh objects per category")
    parser.add_argument("--seed", type=int, default=1000, help="objects' seed (no judge used it)")
    parser.add_argument("--clips", nargs="*", default=list(SHIPPED_MODELS),
                        help="CLIPs whose binary tests to score by direction: shipped names or .safetensors files "
                             "(none: only the judge)")
    args = parser.parse_args()
    judge = Judge.load(args.judge)
    columns = [f"az {a:g}" for a, _ in DIRECTIONS] + [f"{DIRECTIONS[i][0]:g}+{DIRECTIONS[j][0]:g}" for i, j in PAIRS]
    views = [[d] for d in range(len(DIRECTIONS))] + [list(pair) for pair in PAIRS]  # summed per column
    print(f"{judge.name}: accuracy per question, {args.objects} fresh objects per category (seed {args.seed}), "
          f"elevation {VIEW_DEG[1]:g}, distance {DISTANCE}; clipnerf eval judges from azimuth {VIEW_DEG[0]:g}")
    for category in ("chairs", "cars"):
        logp, attributes = log_probabilities(judge, category, args.objects, args.seed)
        print(f"\n{category:<15} {'n':>5} " + " ".join(f"{c:>8}" for c in columns))
        for question in QUESTIONS[category]:
            truth = torch.tensor([question.label(a) for a in attributes])
            keep = truth >= 0
            accuracy = [float((logp[question.name][keep][:, v].sum(1).argmax(-1) == truth[keep]).float().mean())
                        for v in views]
            print(f"{question.name:<15} {int(keep.sum()):>5} " + " ".join(f"{a:>8.3f}" for a in accuracy))
    for clip in args.clips:
        encoder = ClipEncoder.load(ClipConfig(model=clip) if clip in SHIPPED_MODELS else
                                   ClipConfig(model="compact", checkpoint=clip))
        for category in ("chairs", "cars"):
            print_clip_directions(encoder, category, args.objects, args.seed)


def print_clip_directions(encoder, category: str, objects: int, seed: int) -> None:
    """Each binary test's zero-shot balanced accuracy per direction, with the recall of each side."""
    images, attributes = render_directions(category, objects, seed, encoder.image_size, framing_of(encoder, category))
    features = embed_images(encoder, images).view(objects, len(DIRECTIONS), -1)
    print(f"\n{encoder.name}, {category}: zero-shot balanced accuracy (recall of the prompt's / the opposite's renders)")
    print(f"{'prompt':<44} {'n+/n-':>9} " + " ".join(f"{f'az {a:g} el {e:g}':>18}" for a, e in DIRECTIONS))
    for test in load_prompt_library(None, category).tests:
        truth = [test.truth(category, a) for a in attributes]
        if True not in truth or False not in truth:
            continue
        print_direction_row(encoder, features, truth, test, f"{test.prompt:<44.44}")
        if test.question == "back_tilt":
            print_by_back_height(encoder, features, attributes, truth, test)


def print_direction_row(encoder, features, truth: list, test, label: str) -> None:
    """One table row: the test's balanced accuracy from each direction (recall of each side) on
    the renders whose `truth` is not None."""
    cells = [binary_accuracy(encoder, features[:, d], truth, test.prompt, test.opposite) for d in range(len(DIRECTIONS))]
    counts = f"{truth.count(True)}/{truth.count(False)}"
    print(f"{label:<44} {counts:>9} " + " ".join(
        f"{c['accuracy']:>6.2f} ({c['recall_prompt']:.2f}/{c['recall_opposite']:.2f})" for c in cells))


def print_by_back_height(encoder, features, attributes: list[dict], truth: list, test) -> None:
    """The recline test split by back height (below / at least the median of the backed chairs'):
    a short back's recline moves its top by a pixel or two, so this tells a model that cannot see
    it there from one that reads it wrong everywhere."""
    heights = np.array([a["back_height"] if t is not None else np.nan for a, t in zip(attributes, truth)])
    median = float(np.nanmedian(heights))
    for half, keep in (("short backs", heights < median), ("tall backs", heights >= median)):
        print_direction_row(encoder, features, [t if k else None for t, k in zip(truth, keep)], test, "  " + half)


if __name__ == "__main__":
    main()
