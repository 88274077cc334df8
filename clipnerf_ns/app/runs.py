"""Commands on a trained run: `clipnerf select-object`, `interpolate` and `turntable`, and the
helpers the application shares: objects by name, render configs for ns-render and ns-viewer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import yaml

from clipnerf_ns.atomic import atomic_file
from clipnerf_ns.data.cameras import VIEW_DEG, Orbit, orbit_camera, ring_poses
from clipnerf_ns.data.images import to_uint8
from clipnerf_ns.errors import UserError
from clipnerf_ns.validation import MAX_COUNT, MAX_RESOLUTION, Bounds

if TYPE_CHECKING:  # nerfstudio is imported by the commands that run, not at start-up
    from nerfstudio.engine.trainer import TrainerConfig


def resolve_object(object_ids: list[str], name: str) -> int:
    """An object given by its id (`chair_0007`) or its index in the run (`7`)."""
    if name in object_ids:
        return object_ids.index(name)
    if name.isdigit() and int(name) < len(object_ids):
        return int(name)
    shown = ", ".join(object_ids[:4]) + (", ..." if len(object_ids) > 4 else "")
    raise UserError(f"object {name!r} is not in the run: give an id ({shown}) or an index below {len(object_ids)}")


def interpolation_strip(
    model, a: int, b: int, steps: int, resolution: int, azimuth: float = VIEW_DEG[0], elevation: float = VIEW_DEG[1]
) -> np.ndarray:
    """Rows of renders with codes interpolated from object `a` to object `b`: shape only,
    appearance only, then both. Returns an (3 * resolution, steps * resolution, 3) uint8 image."""
    import torch  # deferred: the command line imports this module at start-up
    from rich.progress import track

    from clipnerf_ns.codes import Codes

    start, end = (model.object_codes(torch.tensor(i, device=model.box_min.device)) for i in (a, b))
    camera = orbit_camera(resolution, azimuth, elevation, model.orbit)
    rows = []
    for move_shape, move_appearance in ((True, False), (False, True), (True, True)):
        tiles = []
        for i in track(range(steps), description="rendering in-between objects", transient=True):
            mixed = start.lerp(end, i / (steps - 1))
            codes = Codes(mixed.z_s if move_shape else start.z_s, mixed.z_a if move_appearance else start.z_a)
            tiles.append(to_uint8(model.render_view(camera, codes)["rgb"]))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def write_render_config(config: TrainerConfig, out_dir: Path, overwrite: bool = False) -> Path:
    """Write `config` to OUT/config.yml for ns-render / ns-viewer; it still loads the run's checkpoint."""
    out_dir = Path(out_dir)
    target = out_dir / "config.yml"
    if target.exists() and not overwrite:
        raise UserError(f"{target}: exists (pass --overwrite to replace it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as partial:
        partial.write_text(yaml.dump(config), "utf8")
    return target


@dataclass
class SelectObject:
    """Write a config that ns-render and ns-viewer load to show one object of a trained run
    (rays of camera paths carry no object, so the config names it)."""

    load_config: Path
    """The run's config.yml (written by ns-train)."""
    object: str
    """Object id (e.g. chair_0007) or index in the run."""
    output_dir: Path
    """Folder for the new config.yml; it still loads the run's checkpoint."""
    overwrite: bool = False
    """Replace an existing config.yml there."""

    def main(self) -> Path:
        # deferred: the command line imports this module at start-up; these import torch and nerfstudio
        from clipnerf_ns.app.runs import resolve_object, write_render_config
        from clipnerf_ns.pipelines.runs import load_run, nerf_of, read_run_config

        config = read_run_config(self.load_config)
        _, pipeline = load_run(self.load_config)
        config.pipeline.model.render_object = resolve_object(nerf_of(pipeline).object_ids, self.object)
        path = write_render_config(config, self.output_dir, self.overwrite)
        print(f"ns-render camera-path --load-config {path} ... renders {self.object}")
        return path


@dataclass
class Interpolate:
    """Render a strip of in-between objects: codes interpolated from one training object to
    another, shape only, appearance only, and both (one row each)."""

    load_config: Path
    """The run's config.yml (written by ns-train)."""
    objects: tuple[str, str]
    """The two end objects (ids or indices)."""
    output: Path = Path("interpolation.png")
    """PNG to write."""
    steps: Annotated[int, Bounds(2, 64)] = 7
    """Images per row, ends included."""
    resolution: Annotated[int, Bounds(8, MAX_RESOLUTION)] = 128
    """Image size in pixels."""
    azimuth: float = VIEW_DEG[0]
    """Camera azimuth in degrees (0 looks at the object's front)."""
    elevation: Annotated[float, Bounds(-90, 90)] = VIEW_DEG[1]
    """Camera elevation in degrees."""

    def main(self) -> Path:
        # deferred: the command line imports this module at start-up; these import torch and nerfstudio
        from PIL import Image

        from clipnerf_ns.app.runs import interpolation_strip, resolve_object
        from clipnerf_ns.pipelines.runs import load_run, nerf_of

        _, pipeline = load_run(self.load_config)
        model = nerf_of(pipeline)
        a, b = (resolve_object(model.object_ids, name) for name in self.objects)
        strip = interpolation_strip(model, a, b, self.steps, self.resolution, self.azimuth, self.elevation)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(strip).save(self.output)
        print(f"rows: shape, appearance, both; columns: {self.objects[0]} -> {self.objects[1]}")
        return self.output


@dataclass
class Turntable:
    """Write an orbit camera path (nerfstudio's camera-path JSON) for
    `ns-render camera-path --camera-path-filename PATH`."""

    output: Path = Path("turntable.json")
    """JSON file to write."""
    frames: Annotated[int, Bounds(1, MAX_COUNT)] = 60
    """Cameras on the orbit."""
    seconds: Annotated[float, Bounds(0.01, 3600)] = 4.0
    """Length of the video ns-render makes of it."""
    resolution: Annotated[int, Bounds(8, MAX_RESOLUTION)] = 128
    """Image size in pixels (square)."""
    elevation: Annotated[float, Bounds(-90, 90)] = 20.0
    """Camera elevation in degrees."""
    distance: Annotated[float, Bounds(0.01, 100)] = Orbit.distance
    """Distance from the centre of the scene box (the procedural collections' cameras use 2.2)."""
    fov: Annotated[float, Bounds(1, 179)] = Orbit.fov_deg
    """Field of view in degrees."""

    def main(self) -> Path:


        poses = ring_poses(self.frames, self.distance, self.elevation)
        path = {
            "camera_type": "perspective",
            "render_height": self.resolution,
            "render_width": self.resolution,
            "seconds": self.seconds,
            "camera_path": [
                {"camera_to_world": pose.reshape(-1).tolist(), "fov": self.fov, "aspect": 1.0} for pose in poses
            ],
        }
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.write_text(json.dumps(path, indent=1))
        return self.output
