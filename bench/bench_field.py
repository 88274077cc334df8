"""Speed of the conditional NeRF on this machine, in one process:

* training rays per second (forward, backward and Adam step on batches of training rays),
* the time to render one 128 x 128 view of a training object,
* the field's achieved FLOP rate against a plain matrix multiply of the same width.

    python bench/bench_field.py --load-config RUN/config.yml     # a trained run (pruned grids)
    python bench/bench_field.py --data COLLECTION                # a fresh clip-nerf-small
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import tyro
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from clipnerf_ns.app.methods import clip_nerf_small
from clipnerf_ns.data.cameras import orbit_camera
from clipnerf_ns.fields.conditional_field import ConditionalField
from clipnerf_ns.pipelines.runs import load_run


@dataclass
class Args:
    load_config: Optional[Path] = None
    """A trained clip-nerf run (its config.yml)."""
    data: Optional[Path] = None
    """Without a run: a collection, to build a fresh clip-nerf-small model for it."""
    rays: int = 1024
    """Rays per training batch."""
    train_steps: int = 20
    """Timed training steps."""
    views: int = 8
    """Timed 128 x 128 renders."""


def field_flops_per_point(field: ConditionalField) -> int:
    """Multiply-adds x 2 of every linear layer a point goes through (deformation, trunk, colour)."""
    return sum(2 * m.in_features * m.out_features for m in field.modules() if isinstance(m, torch.nn.Linear))


class FieldTimer:
    """Counts the points the field evaluates and the time spent in it (forward only)."""

    def __init__(self, field: ConditionalField):
        self.points, self.seconds, self._start = 0, 0.0, 0.0
        field.register_forward_pre_hook(self._before)
        field.register_forward_hook(self._after)

    def _before(self, module, args):
        self._start = time.perf_counter()
        self.points += args[0].shape[0]

    def _after(self, module, args, output):
        self.seconds += time.perf_counter() - self._start


def matmul_rate(width: int, rows: int = 65536, repeats: int = 10) -> float:
    x, w = torch.randn(rows, width), torch.randn(width, width)
    torch.relu(x @ w)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.relu(x @ w)
    return 2 * rows * width * width * repeats / (time.perf_counter() - start)


def training_rays(model, cameras, count: int, generator: torch.Generator) -> RayBundle:
    index = torch.randint(len(cameras), (count,), generator=generator)
    h, w = int(cameras.height[0]), int(cameras.width[0])
    coords = torch.stack([torch.randint(h, (count,), generator=generator), torch.randint(w, (count,), generator=generator)], -1)
    bundle = cameras.generate_rays(camera_indices=index[:, None], coords=coords.float() + 0.5)
    bundle.metadata = {"object_index": cameras.metadata["object_index"][index]}
    return bundle


def main(args: Args) -> None:
    torch.manual_seed(0)
    if args.load_config is not None:
        config, pipeline = load_run(args.load_config)
        model = pipeline.model
        # The training cameras as the dataparser gives them: a loaded run's show the display
        # object only (`show_selected_object_in_training_views`), and training rays need theirs.
        dataparser = config.pipeline.datamanager.dataparser
        dataparser.data = config.pipeline.datamanager.data
        cameras = dataparser.setup().get_dataparser_outputs("train").cameras
    elif args.data is not None:
        from clipnerf_ns.data.dataparser import CollectionDataParserConfig

        outputs = CollectionDataParserConfig(data=args.data).setup().get_dataparser_outputs("train")
        model = clip_nerf_small.config.pipeline.model.setup(
            scene_box=SceneBox(aabb=outputs.scene_box.aabb), num_train_data=len(outputs.image_filenames),
            metadata=outputs.metadata,
        )
        cameras = outputs.cameras
    else:
        raise SystemExit("give --load-config RUN/config.yml or --data COLLECTION")
    sizes = model.config.field
    print(f"threads {torch.get_num_threads()}; field: deformation {sizes.deform_layers}x{sizes.deform_width}, "
          f"trunk {sizes.trunk_layers}x{sizes.trunk_width}, codes {sizes.shape_dim}+{sizes.appearance_dim}; "
          f"samples {model.config.num_coarse_samples}+{model.config.num_fine_samples}")
    timer = FieldTimer(model.field)
    flops = field_flops_per_point(model.field)

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    batches = [training_rays(model, cameras, args.rays, generator) for _ in range(args.train_steps + 2)]
    for i, bundle in enumerate(batches):
        if i == 2:
            start, timer.points, timer.seconds = time.perf_counter(), 0, 0.0
        outputs = model.get_outputs(bundle)
        loss = outputs["rgb"].square().mean() + outputs["rgb_coarse"].square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    train_seconds = time.perf_counter() - start
    print(f"training: {args.rays * args.train_steps / train_seconds:,.0f} rays/s "
          f"({train_seconds / args.train_steps * 1000:.0f} ms per {args.rays}-ray step, "
          f"{timer.points / args.train_steps / args.rays:.1f} field points per ray)")

    model.eval()
    codes = model.object_codes(torch.tensor(0)).detach()
    model.render_view(orbit_camera(128, 0.0, 25.0), codes)  # warm-up
    start = time.perf_counter()
    grid = model.occupancy_for_codes(codes.z_s)
    grid_seconds = time.perf_counter() - start
    timer.points, timer.seconds = 0, 0.0
    start = time.perf_counter()
    for i in range(args.views):
        model.render_view(orbit_camera(128, 360.0 * i / args.views, 25.0), codes, grid)
    view_seconds = (time.perf_counter() - start) / args.views
    field_rate = timer.points * flops / timer.seconds
    reference = matmul_rate(sizes.trunk_width)
    print(f"render: {view_seconds:.3f} s per 128x128 view ({timer.points / args.views / 128**2:.1f} field points "
          f"per pixel; {timer.seconds / args.views / view_seconds:.0%} of the time in the field), plus "
          f"{grid_seconds:.3f} s once per new code for its {model.config.occupancy_resolution}^3 occupancy grid")
    print(f"field: {field_rate / 1e9:.1f} GFLOP/s ({flops / 1e3:.1f} kFLOP per point) = "
          f"{field_rate / reference:.0%} of a {sizes.trunk_width}-wide matmul ({reference / 1e9:.1f} GFLOP/s)")


if __name__ == "__main__":
    main(tyro.cli(Args))
