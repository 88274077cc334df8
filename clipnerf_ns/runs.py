"""Trained clip-nerf runs (RUN/config.yml written by ns-train): loading, picking objects, cameras,
and render configs that ns-render and ns-viewer load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.utils.eval_utils import eval_setup

from clipnerf_ns.atomic import partial_path
from clipnerf_ns.checkpoints import read_newest_checkpoint
from clipnerf_ns.config_yaml import load_config_yaml
from clipnerf_ns.data.dataparser import make_cameras
from clipnerf_ns.data.render import Intrinsics, orbit_pose
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.clip_nerf import ClipNerfModel, ClipNerfModelConfig, Codes
from clipnerf_ns.pipelines.clip_nerf_pipeline import ClipNerfPipeline


def read_run_config(config_path: Path) -> TrainerConfig:
    """The TrainerConfig of a clip-nerf run, with its checkpoint checked to exist."""
    config_path = Path(config_path)
    if not config_path.is_file():
        raise UserError(f"{config_path}: no such config file (ns-train writes RUN/config.yml)")
    config = load_config_yaml(config_path.read_text(), str(config_path))
    from clipnerf_ns.pipelines.mapper_pipeline import MapperModelConfig

    if not isinstance(config, TrainerConfig) or not isinstance(config.pipeline.model, (ClipNerfModelConfig, MapperModelConfig)):
        raise UserError(f"{config_path}: not the config of a clip-nerf run")
    checkpoints = config.get_checkpoint_dir()
    if not checkpoints.is_dir() or not any(checkpoints.glob("step-*.ckpt")):
        raise UserError(f"{config_path}: no checkpoint in {checkpoints} (has the run saved one yet?)")
    return config


def latest_checkpoint(config: TrainerConfig) -> tuple[Path, dict]:
    """The run's newest checkpoint that loads, and its contents (weights only)."""
    return read_newest_checkpoint(config.get_checkpoint_dir())


def load_run(config_path: Path) -> tuple[TrainerConfig, ClipNerfPipeline]:
    """The run's pipeline with its latest checkpoint, in evaluation mode (a clip-nerf run, or a
    mapper run: `nerf_of(pipeline)` is the conditional NeRF of either)."""
    read_run_config(config_path)
    config, pipeline, _, _ = eval_setup(Path(config_path), test_mode="inference")
    pipeline.eval()
    return config, pipeline


def nerf_of(pipeline) -> ClipNerfModel:
    """The conditional NeRF of a clip-nerf run or of a mapper run (whose model wraps it)."""
    return pipeline.model if isinstance(pipeline.model, ClipNerfModel) else pipeline.model.nerf



def resolve_object(object_ids: list[str], name: str) -> int:
    """An object given by its id (`chair_0007`) or its index in the run (`7`)."""
    if name in object_ids:
        return object_ids.index(name)
    if name.isdigit() and int(name) < len(object_ids):
        return int(name)
    shown = ", ".join(object_ids[:4]) + (", ..." if len(object_ids) > 4 else "")
    raise UserError(f"object {name!r} is not in the run: give an id ({shown}) or an index below {len(object_ids)}")


def orbit_camera(
    resolution: int, azimuth_deg: float, elevation_deg: float, distance: float = 2.2, fov_deg: float = 40.0
) -> Cameras:
    """One square pinhole camera on the orbit around the origin (z up), as the collections use."""
    intr = Intrinsics.from_fov(resolution, resolution, fov_deg)
    c2w = orbit_pose(distance, azimuth_deg, elevation_deg)[None]
    return make_cameras(c2w, [(intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height)])


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def interpolation_strip(
    model, a: int, b: int, steps: int, resolution: int, azimuth: float = 40.0, elevation: float = 25.0
) -> np.ndarray:
    """Rows of renders with codes interpolated from object `a` to object `b`: shape only,
    appearance only, then both. Returns an (3 * resolution, steps * resolution, 3) uint8 image."""
    from rich.progress import track

    start, end = (model.object_codes(torch.tensor(i, device=model.box_min.device)) for i in (a, b))
    camera = orbit_camera(resolution, azimuth, elevation)
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
    partial = partial_path(target)
    partial.write_text(yaml.dump(config), "utf8")
    partial.replace(target)
    return target
