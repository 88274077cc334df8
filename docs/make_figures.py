"""The README's pictures of a trained clip-nerf run:

    python docs/make_figures.py RUN/config.yml --out docs/images

* heldout_views.png: held-out views of some training objects, ground truth above the render;
* prior_samples.png: objects whose codes are drawn from the code prior (never seen in training).
The interpolation strip comes from `clipnerf interpolate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro
from nerfstudio.utils.eval_utils import eval_setup
from PIL import Image

from clipnerf_ns.codes import BACKGROUNDS, Codes, over_background
from clipnerf_ns.data.cameras import orbit_camera
from clipnerf_ns.data.images import to_uint8


@dataclass
class Args:
    config: tyro.conf.Positional[Path]
    """The run's config.yml."""
    out: Path = Path("docs/images")
    """Folder for the PNGs."""
    objects: int = 8
    """Objects in the held-out-view figure."""
    samples: int = 8
    """Draws from the code prior."""
    seed: int = 0
    """Seed of the prior draws."""


def main(args: Args) -> None:
    _, pipeline, _, _ = eval_setup(args.config, test_mode="test")
    model = pipeline.model
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = pipeline.datamanager.eval_dataset
    object_of_camera = dataset.cameras.metadata["object_index"][:, 0]
    background = torch.tensor(BACKGROUNDS[model.config.render_background])
    columns = []
    for index in range(min(args.objects, model.num_objects)):
        view = int(torch.nonzero(object_of_camera == index)[1])  # the second view of the evaluation ring
        camera = dataset.cameras[view : view + 1]
        truth = over_background(dataset[view]["image"], background)
        render = model.get_outputs_for_camera(camera)["rgb"]
        columns.append(np.concatenate([to_uint8(truth), to_uint8(render)], axis=0))
    Image.fromarray(np.concatenate(columns, axis=1)).resize(
        (columns[0].shape[1] * len(columns) * 2, columns[0].shape[0] * 2), Image.NEAREST
    ).save(args.out / "heldout_views.png")

    drawn = model.sample_prior(args.samples, torch.Generator().manual_seed(args.seed))
    camera = orbit_camera(128, 40.0, 25.0)
    tiles = [to_uint8(model.render_view(camera, Codes(drawn.z_s[i], drawn.z_a[i]))["rgb"]) for i in range(args.samples)]
    Image.fromarray(np.concatenate(tiles, axis=1)).save(args.out / "prior_samples.png")
    print(f"wrote {args.out / 'heldout_views.png'} and {args.out / 'prior_samples.png'}")


if __name__ == "__main__":
    main(tyro.cli(Args))
