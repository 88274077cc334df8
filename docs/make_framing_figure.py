"""The README's picture of how the compact CLIPs' views are framed: pairs of fresh procedural
objects that differ in one size (a short and a tall back, a low and a tall stool, a short and a
long car), seen from one camera, framed on the object (top row: both fill the frame, the size is
gone) and on a box of the category's largest size centred on the object (bottom row: the shipped
CLIPs' and the judge's views; the size shows).

    python docs/make_framing_figure.py --out docs/images/clip_framing.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from PIL import Image

from clipnerf_ns.clip.domain_data import object_seed
from clipnerf_ns.data.attributes import QUESTIONS
from clipnerf_ns.data.cameras import orbit_pose
from clipnerf_ns.data.render import FRAMING_MARGIN, framing_corners, framing_intrinsics, render
from clipnerf_ns.data.synth import FRAME_EXTENTS, sample_object

PAIRS = (("chairs", "back_height"), ("chairs", "stool_height"), ("cars", "body_length"))
"""(category, size question of `data.attributes`) of each pair: its low and its high answer."""


@dataclass
class Args:
    out: Path = Path("docs/images/clip_framing.png")
    """PNG to write."""
    seed: int = 1000
    """Objects' seed (the benches' fresh objects)."""
    size: int = 64
    """Side of each view in pixels (the CLIPs' input)."""
    zoom: int = 2
    """Each pixel is shown as zoom x zoom pixels."""


def find_pair(category: str, question: str, seed: int, answers: tuple[str, str] = ("low", "high")):
    """The first fresh objects of `category` whose answers to `question` are `answers`."""
    ask = next(q for q in QUESTIONS[category] if q.name == question)
    found = {}
    for index in range(500):
        obj = sample_object(category, np.random.default_rng(object_seed(seed, category, index)))
        answer = ask.answer(obj.attributes)
        if answer is not None:
            found.setdefault(answer, obj)
        if all(a in found for a in answers):
            return tuple(found[a] for a in answers)
    raise RuntimeError(f"no {' and '.join(answers)} {question} among 500 {category}")


def view(obj, category: str, extent, size: int, azimuth: float = 35.0) -> np.ndarray:
    c2w = orbit_pose(2.2, azimuth, 20.0)
    k = framing_intrinsics(framing_corners(*obj.mesh.mesh.bounds, extent), c2w, size, FRAMING_MARGIN)
    rgba = render(obj.mesh, c2w[None], k, supersample=2).rgba[0] / 255.0
    return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])  # over white


def save_grid(rows: list[list[np.ndarray]], args: Args) -> None:
    """Tiles (rows of RGB views in [0, 1]) with grey gaps between them, zoomed, to `args.out`."""
    size = rows[0][0].shape[0]
    lines = [np.concatenate([t for tile in row for t in (tile, np.full((size, 4, 3), 0.8))][:-1], axis=1) for row in rows]
    gap = np.full((4, lines[0].shape[1], 3), 0.8)
    grid = np.kron(np.concatenate([x for line in lines for x in (line, gap)][:-1], axis=0), np.ones((args.zoom, args.zoom, 1)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid * 255 + 0.5).astype(np.uint8)).save(args.out)


def main(args: Args) -> None:
    objects = [(category, obj) for category, key in PAIRS for obj in find_pair(category, key, args.seed)]
    save_grid([[view(obj, category, FRAME_EXTENTS[category] if sized else None, args.size) for category, obj in objects]
               for sized in (False, True)], args)
    print(f"{args.out}: {len(objects)} objects, framed on the object (top) and on the category's box (bottom)")


if __name__ == "__main__":
    main(tyro.cli(Args))
