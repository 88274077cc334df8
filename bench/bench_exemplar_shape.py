"""Shape edits by exemplar image, measured by the attribute judge (not a test).

    OMP_NUM_THREADS=2 python bench/bench_exemplar_shape.py --load-config MAPPER_RUN/config.yml \
        [--data COLLECTION] [--objects 20]

Each of the first `--objects` held-out chairs of a mapper run is edited (shape only) by the first
training view of the next held-out chair (its file in the collection, read as `clipnerf edit
--exemplar` reads it). Prints the share of the judge's shape answers for the edited chair that
match its answers for the exemplar's chair (among the questions that apply to that chair), before
and after the edit, and the haze before and after (`metrics.haze`). An edit towards the exemplar
raises the first figure without raising the second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import tyro

from clipnerf_ns.app.edit_evaluation import judged_shape
from clipnerf_ns.data.attributes import applies_judged
from clipnerf_ns.data.cameras import VIEW_DEG, orbit_camera
from clipnerf_ns.editing.edit import Edit, editor_for, read_exemplar
from clipnerf_ns.eval import metrics
from clipnerf_ns.eval.judge import Judge
from clipnerf_ns.pipelines.runs import load_run


@dataclass
class Args:
    load_config: Path
    """config.yml of a mapper run (ns-train clip-nerf-mappers)."""
    data: Optional[Path] = None
    """The collection of its stage-1 run (default: the one its config names)."""
    objects: int = 20
    """Held-out chairs edited (the first this many)."""


def main(args: Args) -> None:
    start = time.perf_counter()
    config, pipeline = load_run(args.load_config)
    model, judge = pipeline.model, Judge.load(None)
    nerf, editor = model.nerf, editor_for(model)
    data = Path(args.data or config.pipeline.datamanager.data)
    camera = orbit_camera(128, *VIEW_DEG, nerf.orbit)
    held = model.heldout[: args.objects]
    matched, hazes = {"before": [], "after": []}, {"before": [], "after": []}
    for k, index in enumerate(held):
        other = held[(k + 1) % len(held)]
        codes, exemplar_codes = (nerf.object_codes(torch.tensor(i)).detach() for i in (index, other))
        image = sorted((data / nerf.object_ids[other] / "images").glob("*.png"))[0]
        edited = editor.apply(Edit(exemplar=read_exemplar(image), target="shape"), codes)
        wanted = judged_shape(nerf, judge, exemplar_codes)
        questions = [q for q in wanted if applies_judged(q, wanted)]
        for when, c in (("before", codes), ("after", edited)):
            answers = judged_shape(nerf, judge, c)
            matched[when].append(np.mean([answers.get(q) == wanted[q] for q in questions]))
            hazes[when].append(metrics.haze(nerf.render_view(camera, c)["accumulation"]))
    print(f"{args.load_config}: {len(held)} held-out chairs, each edited by the next one's first training view")
    print(f"judge's shape answers matching the exemplar's chair: {np.mean(matched['before']):.3f} -> {np.mean(matched['after']):.3f}")
    print(f"haze: {np.nanmean(hazes['before']):.3f} -> {np.nanmean(hazes['after']):.3f}")
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(tyro.cli(Args))
