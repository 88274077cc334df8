"""The README's picture of part colour prompts: held-out chairs of a mapper run (rows), before, then
for each prompt the appearance mapper's change alone (the whole chair) and the part edit that the
run's part head makes of it (the named part alone).

    python docs/make_part_edits_figure.py --load-config demo_out/runs/chairs/clip-nerf-mappers/pretrained/config.yml
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro
from PIL import Image

from clipnerf_ns.codes import Codes
from clipnerf_ns.data.cameras import VIEW_DEG, orbit_camera
from clipnerf_ns.data.images import to_uint8
from clipnerf_ns.editing.edit import Edit, editor_for
from clipnerf_ns.pipelines.runs import load_run, nerf_of


@dataclass
class Args:
    load_config: Path
    """config.yml of a mapper run whose stage-1 run has a part head."""
    out: Path = Path("docs/images/part_edits.png")
    """PNG to write."""
    prompts: tuple[str, ...] = field(
        default_factory=lambda: ("a chair with a red seat", "a chair with a white back", "a chair with black legs"))
    """Part colour prompts, one pair of columns each."""
    rows: int = 6
    """The run's first this many held-out objects."""
    size: int = 96
    """Side of each view in pixels."""


def main(args: Args) -> None:
    _, pipeline = load_run(args.load_config)
    model, nerf = pipeline.model, nerf_of(pipeline)
    editor, camera = editor_for(model), orbit_camera(args.size, *VIEW_DEG, nerf.orbit)
    rows = []
    for index in model.heldout[: args.rows]:
        codes = nerf.object_codes(torch.tensor(index)).detach()
        tiles = [nerf.render_view(camera, codes)["rgb"]]
        for prompt in args.prompts:
            edit = Edit(prompt=prompt, target="appearance")
            changes = editor.changes(edit, codes)
            whole = Codes(codes.z_s, codes.z_a + changes["parts"].sum(0))  # its one non-zero row: the mapper's change
            tiles += [nerf.render_view(camera, whole)["rgb"], nerf.render_view(camera, editor.apply(edit, codes))["rgb"]]
        rows.append(np.concatenate([to_uint8(t) for t in tiles], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
