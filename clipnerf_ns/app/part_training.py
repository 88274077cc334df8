"""`clipnerf train-parts`: a stage-1 run's part head (`models.part_head`), trained with the field
frozen on surface points of the run's own objects, labelled by their meshes' parts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import numpy as np

from clipnerf_ns.app.collections import synth_object_again
from clipnerf_ns.data.collection import read_json
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.part_head_config import PART_HEAD_FILE
from clipnerf_ns.validation import Bounds

SURFACE_OPACITY = 0.9
"""Pixels at least this opaque in the field's render give a surface point (at their expected depth)."""


@dataclass(kw_only=True)
class TrainParts:
    """Train the part head of a stage-1 run, which makes colour prompts that name a part ("a chair
    with a red seat") recolour that part alone. Each training object is made again from its
    collection's generator and rendered from a few views both by the field (surface points) and as
    a mesh (which part each pixel shows); a small MLP learns p(part | point, shape code) with the
    field frozen. Writes part_head.safetensors beside the run's config.yml."""

    load_config: Path
    """config.yml of a clip-nerf run (stage 1) trained on a `clipnerf synth` collection."""
    views: Annotated[int, Bounds(1, 64)] = 3
    """Views of each object (random directions on the collection's orbit, 5 to 50 degrees up)."""
    resolution: Annotated[int, Bounds(16, 512)] = 64
    """Side of those views (pixels)."""
    steps: Annotated[int, Bounds(1, 1_000_000)] = 4000
    """Training steps of 4096 points each."""
    check_objects: Annotated[int, Bounds(1, 10_000)] = 20
    """The run's last this many objects are left out of training, and the head's accuracy is measured on them."""
    max_objects: Annotated[Optional[int], Bounds(1, 1_000_000)] = None
    """Train on the first this many of the other objects (default: all of them; fewer render sooner)."""
    seed: int = 0
    """Seed of the view directions and of training."""
    overwrite: bool = False
    """Replace the run's part head if it has one."""

    def main(self) -> Path:
        # deferred: the command line imports this module at start-up, and these import torch and nerfstudio
        import torch

        from clipnerf_ns.codes import model_fingerprint
        from clipnerf_ns.models.part_head import PartHead, part_accuracy, save_part_head, train_part_head
        from clipnerf_ns.pipelines.runs import load_run, nerf_of
        from clipnerf_ns.progress import progress_bar

        out = Path(self.load_config).parent / PART_HEAD_FILE
        if out.exists() and not self.overwrite:
            raise UserError(f"{out}: the run has a part head already (pass --overwrite to replace it)")
        config, pipeline = load_run(self.load_config)
        nerf = nerf_of(pipeline)
        if pipeline.model is not nerf:
            raise UserError(f"{self.load_config}: a mapper run; pass its stage-1 run's config.yml (--pipeline.stage1 of the mapper run)")
        make_again = objects_made_again(Path(config.pipeline.datamanager.data))
        if nerf.num_objects <= self.check_objects:
            raise UserError(f"the run has {nerf.num_objects} objects: too few to leave {self.check_objects} out (--check-objects)")
        chosen = list(range(nerf.num_objects - self.check_objects))[: self.max_objects]
        chosen += list(range(nerf.num_objects - self.check_objects, nerf.num_objects))
        objects = make_again([nerf.object_ids[i] for i in chosen])
        rng = np.random.default_rng(self.seed)
        with torch.no_grad(), progress_bar() as progress:
            task = progress.add_task("surface points of the run's objects", total=len(objects), status="")
            samples = []
            for index, obj in zip(chosen, objects):
                samples.append(labelled_surface(nerf, index, obj.mesh, self.views, self.resolution, rng))
                progress.advance(task)
        parts = tuple(sorted({name for _, _, names in samples for name in names}))
        if not parts:
            raise UserError("the collection's objects have no part labels (its generator names no parts)")
        train, check = samples[: -self.check_objects], samples[-self.check_objects :]
        head = PartHead(parts, nerf.config.field.shape_dim).to(nerf.box_min.device)
        generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        with progress_bar() as progress:
            task = progress.add_task("training the part head", total=self.steps, status="")
            train_part_head(head, *stack_samples(train, parts), self.steps, generator=generator,
                            progress=lambda steps: progress.track(steps, task_id=task))
        accuracy = part_accuracy(head, *stack_samples(check, parts))
        print("part accuracy on surface points of the " + f"{len(check)} objects left out: "
              + ", ".join(f"{name} {value:.3f}" for name, value in accuracy.items()))
        info = {"objects": len(train), "views": self.views, "resolution": self.resolution, "steps": self.steps,
                "check_objects": len(check), "accuracy": accuracy, "command": "clipnerf train-parts"}
        return save_part_head(out, head, model_fingerprint(nerf.field), info)


def objects_made_again(data: Path):
    """A function: object ids of the `clipnerf synth` collection at `data` -> those objects made
    again (mesh with part labels, attributes, captions); refused for other collections."""
    collection = read_json(data / "collection.json")
    generator = collection.get("generator") or {}
    if not str(generator.get("command", "")).startswith("clipnerf synth"):
        raise UserError(f"{data}: train-parts makes the objects again from their generator, and this collection "
                        "was not made by clipnerf synth (its part labels are not at hand)")
    position = {entry["id"]: i for i, entry in enumerate(collection["objects"])}

    def make_again(object_ids: list[str]) -> list:
        missing = [name for name in object_ids if name not in position]
        if missing:
            raise UserError(f"{data}: the run's object {missing[0]} is not in this collection")
        return [synth_object_again(generator["options"], position[name]) for name in object_ids]

    return make_again


def labelled_surface(nerf, index: int, mesh, views: int, resolution: int, rng: np.random.Generator):
    """(points in the field's box coordinates, shape code, part name per point) of one object: the
    expected depth of each pixel the field renders opaque and the mesh shows a labelled part at."""
    import torch  # deferred: torch is slow to import

    from clipnerf_ns.data.cameras import make_cameras, orbit_pose
    from clipnerf_ns.data.render import Intrinsics, part_masks
    from clipnerf_ns.models.rendering import normalize_points

    codes = nerf.object_codes(torch.tensor(index, device=nerf.box_min.device)).detach()
    points, names = [], []
    for _ in range(views):
        c2w = orbit_pose(nerf.orbit.distance, rng.uniform(0.0, 360.0), rng.uniform(5.0, 50.0))
        k = Intrinsics.from_fov(resolution, resolution, nerf.orbit.fov_deg)
        camera = make_cameras(c2w[None], [(k.fx, k.fy, k.cx, k.cy, k.width, k.height)])
        render = nerf.render_view(camera, codes)
        labels = np.full((resolution, resolution), "", dtype=object)
        for name, mask in part_masks(mesh, c2w, k).items():
            labels[mask] = name
        opacity = render["accumulation"][..., 0].cpu()
        keep = (opacity > SURFACE_OPACITY) & torch.from_numpy(labels != "")
        rays = camera.generate_rays(camera_indices=0, keep_shape=True)
        surface = rays.origins + rays.directions * render["depth"].cpu()  # the render's depth is already the expected one
        points.append(normalize_points(surface[keep].to(nerf.box_min.device), nerf.box_min, nerf.box_max))
        names += labels[keep.numpy()].tolist()
    return torch.cat(points), codes.z_s, names


def stack_samples(samples: list, parts: tuple[str, ...]):
    """(points, shape code per point, part index per point) of many objects' `labelled_surface`."""
    import torch  # deferred: torch is slow to import

    points = torch.cat([p for p, _, _ in samples])
    z_s = torch.cat([z[None].expand(len(p), -1) for p, z, _ in samples])
    labels = torch.tensor([parts.index(n) for _, _, names in samples for n in names], device=points.device)
    return points, z_s, labels
