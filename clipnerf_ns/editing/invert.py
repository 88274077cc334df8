"""Inversion (CLIP-NeRF section 3.3): one image -> camera pose, shape code z_s, appearance code z_a.

The image is reduced to a *target*: a square RGB image at the working resolution, composited
over the model's render background through a foreground mask (from the alpha channel, a mask
file, or background-colour thresholding), plus that mask. A coarse search renders cheap
low-resolution views over the upper hemisphere, of the prior mean codes and of every training
object's codes, keeps the best few (code, view) pairs, refines each by a short joint
optimisation and starts from the winner (its view; its codes, or the prior mean as in the paper
with `init_codes="mean"`). Then the optimisation alternates between the pose, the shape code and
the appearance code (a block of `phase_steps` steps each, repeated), or moves all three at once
(`schedule="joint"`).

Loss per step: photometric L2 of the render against the masked target, a silhouette term
(the render's opacity against the mask), a small pull of the codes towards the prior mean, and
optionally `clip_weight` times the CLIP distance between the render and the target. Codes are
optimised in units of the code prior (z = mean + std * u), and Gaussian noise of scale
`noise * (1 - t)` (t: fraction of the noise phase done) is added to u in the forward pass only.

Everything here is shared by `clipnerf invert` (a plain loop, `run_inversion`) and the
`clip-nerf-invert` pipeline that nerfstudio's trainer drives: one trainer step is one call of
`Inversion.losses`, and both step the same nerfstudio `Optimizers` (`inversion_optimizers`).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from nerfstudio.engine.optimizers import AdamOptimizerConfig, Optimizers
from torch import Tensor, nn

from clipnerf_ns.atomic import output_lock, partial_path, remove_stale_partials
from clipnerf_ns.data.images import read_rgba
from clipnerf_ns.editing.invert_config import InversionConfig
from clipnerf_ns.editing.losses import clip_distance
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.clip_nerf import BACKGROUNDS, ClipNerfModel, Codes, psnr
from clipnerf_ns.models.rendering import render_rays

GROUPS = ("pose", "shape", "appearance")
CAMERA_FREEDOM = {"sphere": 2, "orbit": 3, "free": 7}
"""Leading entries of the pose vector (azimuth, elevation, distance, roll, look-at) each camera mode moves."""
MAX_ELEVATION = math.radians(85.0)
OUTPUT_FILES = ("codes.safetensors", "pose.json", "comparison.png", "config.yml")


# ----------------------------------------------------------------------------- the image


@dataclass(frozen=True)
class Photo:
    """An image as read: straight-alpha RGB in [0, 1] and where the foreground mask came from."""

    rgb: Float[Tensor, "h w 3"]
    mask: Float[Tensor, "h w"]
    mask_source: Literal["alpha", "file", "threshold"]


@dataclass(frozen=True)
class Target:
    """The square working image the render is compared with, and its camera intrinsics."""

    rgb: Float[Tensor, "h w 3"]
    """The image over the model's render background (mask applied)."""
    mask: Float[Tensor, "h w"]
    """Foreground in [0, 1]."""
    focal: float
    """Focal length in pixels at the working resolution."""

    @property
    def resolution(self) -> int:
        return self.rgb.shape[0]

    def to(self, device) -> "Target":
        return Target(self.rgb.to(device), self.mask.to(device), self.focal)


def has_alpha(rgba: np.ndarray) -> bool:
    """Whether the alpha channel says anything (some pixel is not fully opaque)."""
    return bool(rgba[..., 3].min() < 255)


def border_colour(rgb: Float[Tensor, "h w 3"]) -> Float[Tensor, "3"]:
    """Median colour of the outermost pixel ring (the background of a product-style photo)."""
    ring = torch.cat([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return ring.median(dim=0).values


def threshold_mask(rgb: Float[Tensor, "h w 3"], threshold: float) -> Float[Tensor, "h w"]:
    """Foreground where a pixel differs from the border colour by more than `threshold` in some channel."""
    distance = (rgb - border_colour(rgb)).abs().amax(dim=-1)
    return (distance > threshold).float()


def mask_from_file(path: Path, size: tuple[int, int]) -> Float[Tensor, "h w"]:
    """A mask image (white = foreground; its alpha channel if it has one) of the image's size (w, h)."""
    rgba = read_rgba(path, "mask")
    if (rgba.shape[1], rgba.shape[0]) != size:
        raise UserError(f"{path}: the mask is {rgba.shape[1]}x{rgba.shape[0]} but the image is {size[0]}x{size[1]}")
    values = rgba[..., 3] if has_alpha(rgba) else rgba[..., :3].mean(axis=-1)
    return torch.from_numpy(values.astype(np.float32) / 255.0)


def read_photo(image: Path, mask: Optional[Path] = None, threshold: float = 0.1) -> Photo:
    """The image and its foreground mask: a mask file wins, then the alpha channel, then thresholding."""
    rgba = read_rgba(image)
    rgb = torch.from_numpy(rgba[..., :3].astype(np.float32) / 255.0)
    if mask is not None:
        found, source = mask_from_file(mask, (rgba.shape[1], rgba.shape[0])), "file"
    elif has_alpha(rgba):
        found, source = torch.from_numpy(rgba[..., 3].astype(np.float32) / 255.0), "alpha"
    else:
        found, source = threshold_mask(rgb, threshold), "threshold"
    if float((found > 0.5).float().sum()) < 4:
        where = {"file": f"the mask {mask}", "alpha": "its alpha channel", "threshold": "the background threshold"}[source]
        raise UserError(f"{image}: no foreground found (from {where})")
    return Photo(rgb, found, source)


def make_target(photo: Photo, resolution: int, fov_deg: float, background: Float[Tensor, "3"]) -> Target:
    """Pad the photo to a centred square, resize (antialiased) and composite it over `background`.

    `fov_deg` is the horizontal field of view of the photo as given; the focal length follows the
    padding and resizing, so the camera model stays that of the photo."""
    h, w = photo.mask.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    premultiplied = torch.zeros(4, side, side)
    premultiplied[:3, top : top + h, left : left + w] = (photo.rgb * photo.mask[..., None]).permute(2, 0, 1)
    premultiplied[3, top : top + h, left : left + w] = photo.mask
    small = F.interpolate(premultiplied[None], size=(resolution, resolution), mode="bilinear", antialias=side > resolution,
                          align_corners=False)[0].clamp(0, 1)
    mask = small[3]
    rgb = small[:3].permute(1, 2, 0) + (1.0 - mask[..., None]) * background
    focal = 0.5 * w / math.tan(math.radians(fov_deg) / 2) * resolution / side
    return Target(rgb.clamp(0, 1), mask, focal)


# ----------------------------------------------------------------------------- cameras


def orbit_c2w(pose: Float[Tensor, "7"]) -> Float[Tensor, "3 4"]:
    """Camera-to-world of pose (azimuth, elevation, distance, roll, look-at x, y, z), differentiable.

    Angles in radians; z up; the camera sits on a sphere around the look-at point and looks at it,
    rolled about its viewing axis (as `data.render.orbit_pose` for zero roll and look-at)."""
    azimuth, distance, roll, target = pose[0], pose[2], pose[3], pose[4:7]
    elevation = pose[1].clamp(-MAX_ELEVATION, MAX_ELEVATION)
    out = torch.stack([torch.cos(elevation) * torch.cos(azimuth), torch.cos(elevation) * torch.sin(azimuth), torch.sin(elevation)])
    eye = target + distance * out
    forward = -out
    up = torch.tensor([0.0, 0.0, 1.0], dtype=pose.dtype, device=pose.device)
    right = F.normalize(torch.linalg.cross(forward, up), dim=0)
    cam_up = torch.linalg.cross(right, forward)
    right, cam_up = torch.cos(roll) * right + torch.sin(roll) * cam_up, torch.cos(roll) * cam_up - torch.sin(roll) * right
    return torch.stack([right, cam_up, -forward, eye], dim=1)


def orbit_vector(azimuth_deg: float, elevation_deg: float, distance: float) -> Float[Tensor, "7"]:
    return torch.tensor([math.radians(azimuth_deg), math.radians(elevation_deg), distance, 0.0, 0.0, 0.0, 0.0])


def pixel_grid(resolution: int, device=None) -> Int[Tensor, "pixels 2"]:
    """(row, col) of every pixel, row-major."""
    rows, cols = torch.meshgrid(torch.arange(resolution, device=device), torch.arange(resolution, device=device), indexing="ij")
    return torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=-1)


def camera_rays(
    c2w: Float[Tensor, "3 4"], focal: float, resolution: int, pixels: Int[Tensor, "rays 2"]
) -> tuple[Float[Tensor, "rays 3"], Float[Tensor, "rays 3"]]:
    """Origins and unit directions through pixel centres of a square pinhole camera (OpenGL axes,
    principal point at the centre), differentiable in `c2w`; the same rays nerfstudio's Cameras make."""
    centre = resolution / 2.0
    u = pixels[:, 1].to(c2w.dtype) + 0.5
    v = pixels[:, 0].to(c2w.dtype) + 0.5
    local = torch.stack([(u - centre) / focal, -(v - centre) / focal, -torch.ones_like(u)], dim=-1)
    directions = F.normalize(local @ c2w[:, :3].T, dim=-1)
    return c2w[:, 3].expand_as(directions), directions


def rotation_error_deg(a: Float[Tensor, "3 4"], b: Float[Tensor, "3 4"]) -> float:
    """Geodesic angle between two camera rotations, in degrees."""
    relative = a[:, :3].T.double() @ b[:, :3].double()
    cosine = ((torch.trace(relative) - 1.0) / 2.0).clamp(-1.0, 1.0)
    return math.degrees(float(torch.arccos(cosine)))


def describe_pose(pose: Float[Tensor, "7"]) -> dict:
    values = pose.detach().cpu().double().tolist()
    return {
        "azimuth_deg": math.degrees(values[0]) % 360.0,
        "elevation_deg": math.degrees(max(-MAX_ELEVATION, min(MAX_ELEVATION, values[1]))),
        "distance": values[2],
        "roll_deg": math.degrees(values[3]),
        "look_at": values[4:7],
    }


# ----------------------------------------------------------------------------- the variables


class InversionVariables(nn.Module):
    """What the optimisation moves: the pose vector and both codes in prior units (z = mean + std * u)."""

    def __init__(self, pose: Float[Tensor, "7"], d_shape: int, d_app: int) -> None:
        super().__init__()
        self.pose = nn.Parameter(pose.clone().float())
        self.u_s = nn.Parameter(torch.zeros(d_shape))
        self.u_a = nn.Parameter(torch.zeros(d_app))

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"pose": [self.pose], "shape": [self.u_s], "appearance": [self.u_a]}


def prior_codes(mean: Codes, std: Codes, u_s: Float[Tensor, "d_shape"], u_a: Float[Tensor, "d_app"]) -> Codes:
    """Codes from prior units: z = mean + std * u."""
    return Codes(mean.z_s + std.z_s * u_s, mean.z_a + std.z_a * u_a)


def inversion_optimizers() -> dict:
    """nerfstudio optimizer configs of the three groups (Adam, constant rate): the clip-nerf-invert
    method and `clipnerf invert` step the same ones."""
    return {
        "pose": {"optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-8), "scheduler": None},
        "shape": {"optimizer": AdamOptimizerConfig(lr=3e-2, eps=1e-8), "scheduler": None},
        "appearance": {"optimizer": AdamOptimizerConfig(lr=3e-2, eps=1e-8), "scheduler": None},
    }


def active_groups(step: int, schedule: str, phase_steps: int) -> tuple[str, ...]:
    """Groups moved at `step`: one block each of pose, shape, appearance in turn, or all three."""
    if schedule == "joint":
        return GROUPS
    return (GROUPS[(step // phase_steps) % len(GROUPS)],)


def noise_scale(step: int, total_steps: int, noise: float, fraction: float) -> float:
    """Noise on the codes (prior std units): `noise` at step 0, decaying linearly to 0 at `fraction` of the steps."""
    span = max(fraction * total_steps, 1.0)
    return noise * max(0.0, 1.0 - step / span)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random source of one step: a pure function of (seed, step), so a resumed run draws the same."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1)[0]))


# ----------------------------------------------------------------------------- the optimisation


def collection_camera(config_data: Optional[Path]) -> tuple[float, float]:
    """Field of view and camera distance of the run's collection (40 deg, 2.2 when unknown)."""
    try:
        plan = json.loads((Path(config_data) / "collection.json").read_text())["generator"]["options"]["plan"]
        return float(plan["fov_deg"]), float(plan["camera_distance"])
    except (OSError, TypeError, KeyError, ValueError):
        return 40.0, 2.2


class Inversion:
    """The loss of one step, renders and results of one inversion (model frozen, target fixed)."""

    def __init__(self, model: ClipNerfModel, target: Target, config: InversionConfig, variables: InversionVariables,
                 clip=None) -> None:
        self.model, self.config, self.variables, self.clip = model, config, variables, clip
        self.device = model.box_min.device
        self.target = target.to(self.device)
        self.mean, self.std = model.code_prior()
        self.background = model.box_min.new_tensor(BACKGROUNDS[model.config.render_background])
        self.pixels = pixel_grid(target.resolution, self.device)
        self.target_embedding = None
        if clip is not None and config.clip_weight > 0:
            with torch.no_grad():
                self.target_embedding = clip.encode_image(self.target.rgb[None])
        self._grid: Optional[tuple[int, Tensor]] = None

    # -- codes and grids

    def codes(self, noise: Optional[torch.Generator] = None, scale: float = 0.0, detach: tuple[str, ...] = ()) -> Codes:
        u_s, u_a = self.variables.u_s, self.variables.u_a
        u_s = u_s.detach() if "shape" in detach else u_s
        u_a = u_a.detach() if "appearance" in detach else u_a
        if noise is not None and scale > 0:
            u_s = u_s + scale * torch.randn(u_s.shape, generator=noise).to(self.device)
            u_a = u_a + scale * torch.randn(u_a.shape, generator=noise).to(self.device)
        return prior_codes(self.mean, self.std, u_s, u_a)

    def pose(self, detach: bool = False) -> Float[Tensor, "7"]:
        pose = self.variables.pose.detach() if detach else self.variables.pose
        free = CAMERA_FREEDOM[self.config.camera]
        if free == 7:
            return pose
        moving = torch.arange(7, device=pose.device) < free
        return torch.where(moving, pose, pose.detach())

    def grid(self, step: int) -> Tensor:
        """Occupancy of the current shape code, dilated once more; refreshed every `grid_every` steps."""
        key = step // self.config.grid_every
        if self._grid is None or self._grid[0] != key:
            grid = self.model.occupancy_for_codes(self.codes().z_s.detach())
            grid = F.max_pool3d(grid.float()[:, None], kernel_size=3, stride=1, padding=1)[:, 0] > 0.5
            self._grid = (key, grid)
        return self._grid[1]

    # -- rendering

    def render_pixels(self, pose: Tensor, codes: Codes, pixels: Tensor, grid: Tensor, resolution: int,
                      focal: float) -> dict[str, Tensor]:
        origins, directions = camera_rays(orbit_c2w(pose), focal, resolution, pixels)
        rays = origins.shape[0]
        shared = Codes(codes.z_s.reshape(1, -1), codes.z_a.reshape(1, -1))
        chunk = self.model.config.eval_num_rays_per_chunk if not torch.is_grad_enabled() else rays
        pieces: dict[str, list] = {}
        for start in range(0, rays, chunk):
            n = min(chunk, rays - start)
            out = self.model.render_rays(origins[start:start + n], directions[start:start + n], shared, grid,
                                         torch.zeros(n, dtype=torch.long, device=self.device), self.background.expand(n, 3))
            for key in ("rgb", "accumulation"):
                pieces.setdefault(key, []).append(out[key])
        return {key: torch.cat(value) for key, value in pieces.items()}

    @torch.no_grad()
    def render(self, resolution: Optional[int] = None, pose: Optional[Tensor] = None) -> dict[str, Tensor]:
        """The current codes from the current (or a given) pose, as (h, w, c) images."""
        resolution = resolution or self.target.resolution
        focal = self.target.focal * resolution / self.target.resolution
        pose = self.pose(detach=True) if pose is None else pose.to(self.device)
        grid = self.model.occupancy_for_codes(self.codes().z_s)
        out = self.render_pixels(pose, self.codes(), pixel_grid(resolution, self.device), grid, resolution, focal)
        return {key: value.reshape(resolution, resolution, -1) for key, value in out.items()}

    # -- one step

    def losses(self, step: int, total_steps: int, train: bool = True) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Loss dict and metrics of optimisation step `step` of `total_steps` (only the active groups
        get gradients; the others are detached, so their optimizers skip the step)."""
        config = self.config
        active = active_groups(step, config.schedule, config.phase_steps) if train else ()
        detach = tuple(g for g in ("shape", "appearance") if g not in active)
        generator = step_generator(config.seed, step)
        scale = noise_scale(step, total_steps, config.noise, config.noise_fraction) if train else 0.0
        codes = self.codes(generator, scale, detach)
        pose = self.pose(detach="pose" not in active)
        pixels = self.pixels
        use_clip = self.target_embedding is not None
        if train and 0 < config.rays_per_step < len(pixels) and not use_clip:
            pixels = pixels[torch.randperm(len(pixels), generator=generator)[: config.rays_per_step].to(self.device)]
        out = self.render_pixels(pose, codes, pixels, self.grid(step), self.target.resolution, self.target.focal)
        flat = pixels[:, 0] * self.target.resolution + pixels[:, 1]
        target_rgb = self.target.rgb.reshape(-1, 3)[flat]
        target_mask = self.target.mask.reshape(-1)[flat]
        u_s, u_a = self.variables.u_s, self.variables.u_a
        loss_dict = {
            "rgb_loss": F.mse_loss(out["rgb"], target_rgb),
            "silhouette_loss": config.silhouette_weight * F.mse_loss(out["accumulation"][:, 0], target_mask),
            "code_prior": config.prior_weight * 0.5 * ((u_s if "shape" in active else u_s.detach()).pow(2).mean()
                                                       + (u_a if "appearance" in active else u_a.detach()).pow(2).mean()),
        }
        if use_clip:
            image = out["rgb"].reshape(1, self.target.resolution, self.target.resolution, 3)
            distance = clip_distance(self.clip.encode_image(image), self.target_embedding)
            loss_dict["clip_loss"] = config.clip_weight * distance.mean()
        metrics = {"psnr": psnr(out["rgb"].detach(), target_rgb), "noise": torch.tensor(scale)}
        return loss_dict, metrics

    # -- results

    def psnr(self) -> float:
        return float(psnr(self.render()["rgb"], self.target.rgb))

    def result_codes(self) -> Codes:
        codes = self.codes()
        return Codes(codes.z_s.detach().cpu(), codes.z_a.detach().cpu())


def load_clip_for(config: InversionConfig, device):
    """The CLIP encoder of the CLIP term, or None when its weight is 0 (CLIP is then never loaded)."""
    if config.clip_weight <= 0:
        return None
    from clipnerf_ns.clip.encoder import ClipConfig, ClipEncoder

    return ClipEncoder.load(ClipConfig(model=config.clip_model, checkpoint=config.clip_checkpoint), device)


def search_target(target: Target, resolution: int) -> Target:
    """The target at the search's lower resolution."""
    res = min(resolution, target.resolution)
    stacked = torch.cat([target.rgb, target.mask[..., None]], -1).permute(2, 0, 1)[None]
    small = F.interpolate(stacked, size=(res, res), mode="bilinear", antialias=True, align_corners=False)[0].permute(1, 2, 0)
    return Target(small[..., :3], small[..., 3], target.focal * res / target.resolution)


@dataclass(frozen=True)
class Candidate:
    """A starting point: a pose and codes in prior units."""

    pose: Float[Tensor, "7"]
    u_s: Float[Tensor, "d_shape"]
    u_a: Float[Tensor, "d_app"]
    score: float


def cheap_render(model: ClipNerfModel, origins: Float[Tensor, "rays 3"], directions: Float[Tensor, "rays 3"],
                 codes: Codes, grid: Tensor, background: Float[Tensor, "rays 3"], samples: int) -> dict[str, Tensor]:
    """The model's rendering with `samples` coarse samples per ray and no fine pass (for the search)."""
    z_s, z_a = codes.z_s.reshape(1, -1), codes.z_a.reshape(1, -1)

    def point_fn(points: Tensor, ray: Tensor) -> tuple[Tensor, Tensor]:
        return model.field(points, directions[ray], z_s, z_a)

    return render_rays(point_fn, origins, directions, model.box_min, model.box_max, grid,
                       torch.zeros(len(origins), dtype=torch.long, device=origins.device), samples, 0, background,
                       jitter=False)


def search_poses(config: InversionConfig, distance: float) -> list[Tensor]:
    return [orbit_vector(360.0 * k / config.search_azimuths, elevation, distance)
            for elevation in config.search_elevations for k in range(config.search_azimuths)]


@torch.no_grad()
def candidates(model: ClipNerfModel, target: Target, config: InversionConfig, distance: float) -> list[Candidate]:
    """Cheap renders of the search's codes (the prior mean, and every training object's codes
    with `search_codes="training"`) from every search view; the best `search_candidates`
    (code, view) pairs whose azimuths are at least `search_gap` degrees apart."""
    device = model.box_min.device
    mean, std = model.code_prior()
    starts: list[tuple[Codes, Tensor]] = [(mean, model.occupancy_for_codes(mean.z_s))]
    if config.search_codes == "training":
        starts += [(model.object_codes(torch.tensor(i, device=device)).detach(), model.occupancy[i][None])
                   for i in range(model.num_objects)]
    poses = search_poses(config, distance)
    res, pixels = target.resolution, pixel_grid(target.resolution, device)
    rays = [camera_rays(orbit_c2w(pose.to(device)), target.focal, res, pixels) for pose in poses]
    origins, directions = torch.cat([r[0] for r in rays]), torch.cat([r[1] for r in rays])
    background = model.box_min.new_tensor(BACKGROUNDS[model.config.render_background]).expand(len(origins), 3)
    scored = []
    for codes, grid in starts:
        out = cheap_render(model, origins, directions, codes, grid, background, config.search_samples)
        rgb_error = ((out["rgb"] - target.rgb.reshape(1, -1, 3).expand(len(poses), -1, -1).reshape(-1, 3)) ** 2)
        mask_error = (out["accumulation"][:, 0] - target.mask.reshape(1, -1).expand(len(poses), -1).reshape(-1)) ** 2
        per_view = rgb_error.mean(-1).reshape(len(poses), -1).mean(-1) + config.silhouette_weight * mask_error.reshape(len(poses), -1).mean(-1)
        u_s, u_a = (codes.z_s - mean.z_s) / std.z_s, (codes.z_a - mean.z_a) / std.z_a
        scored += [Candidate(poses[k], u_s.cpu(), u_a.cpu(), float(per_view[k])) for k in range(len(poses))]
    chosen: list[Candidate] = []
    for candidate in sorted(scored, key=lambda c: c.score):
        if all(_azimuth_gap(candidate.pose, other.pose) >= config.search_gap for other in chosen):
            chosen.append(candidate)
        if len(chosen) == config.search_candidates:
            break
    return chosen


def _azimuth_gap(a: Tensor, b: Tensor) -> float:
    gap = abs(math.degrees(float(a[0] - b[0]))) % 360.0
    return min(gap, 360.0 - gap)


def search_start(model: ClipNerfModel, target: Target, config: InversionConfig, distance: float) -> Candidate:
    """The starting point: the best few (code, view) pairs of the coarse search, each refined by a
    short joint optimisation at the search resolution; the one that ends with the lowest loss."""
    small = search_target(target.to(model.box_min.device), config.search_resolution)
    found = candidates(model, small, config, distance)
    if config.search_steps == 0 or len(found) == 1:
        return found[0]
    trial = replace(config, schedule="joint", noise=0.0, clip_weight=0.0, rays_per_step=0)
    best = found[0]
    for candidate in found:
        variables = InversionVariables(candidate.pose, *_dims(model))
        variables.u_s.data.copy_(candidate.u_s)
        variables.u_a.data.copy_(candidate.u_a)
        probe = Inversion(model, small, trial, variables.to(model.box_min.device))
        optimizers = optimizers_for(probe.variables)
        for step in range(config.search_steps):
            optimisation_step(probe, optimizers, step, config.search_steps)
        with torch.no_grad():
            losses, _ = probe.losses(config.search_steps, config.search_steps, train=False)
        loss = float(sum(losses.values()))
        if loss < best.score or candidate is found[0]:
            refined = [t.detach().cpu().clone() for t in (probe.variables.pose, probe.variables.u_s, probe.variables.u_a)]
            best = Candidate(*refined, loss)
    return best


def _dims(model: ClipNerfModel) -> tuple[int, int]:
    return model.config.field.shape_dim, model.config.field.appearance_dim


def start_inversion(model: ClipNerfModel, photo: Photo, config: InversionConfig, data: Optional[Path],
                    clip=None) -> Inversion:
    """Target from the photo, initial pose from the coarse search, codes at the prior mean."""
    config.check()
    fov, distance = collection_camera(data)
    fov = config.fov if config.fov is not None else fov
    distance = config.distance if config.distance is not None else distance
    background = torch.tensor(BACKGROUNDS[model.config.render_background])
    target = make_target(photo, config.resolution, fov, background)
    start = search_start(model, target, config, distance)
    variables = InversionVariables(start.pose, *_dims(model))
    if config.init_codes == "search":
        variables.u_s.data.copy_(start.u_s)
        variables.u_a.data.copy_(start.u_a)
    variables = variables.to(model.box_min.device)
    return Inversion(model, target, config, variables, clip)


def optimizers_for(variables: InversionVariables) -> Optimizers:
    return Optimizers(inversion_optimizers(), variables.param_groups())


def optimisation_step(inversion: Inversion, optimizers: Optimizers, step: int, total: int) -> tuple[dict, dict]:
    """One step exactly as nerfstudio's trainer takes it: zero grads, losses, backward, step."""
    optimizers.zero_grad_all()
    loss_dict, metrics = inversion.losses(step, total)
    sum(loss_dict.values()).backward()
    optimizers.optimizer_step_all()
    optimizers.scheduler_step_all(step)
    return loss_dict, metrics


def run_inversion(inversion: Inversion, steps: int, progress: bool = True) -> Inversion:
    """`steps` optimisation steps, with a rich progress bar showing the loss and PSNR."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    optimizers = optimizers_for(inversion.variables)
    columns = (TextColumn("inverting"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=not progress) as bar:
        task = bar.add_task("inverting", total=steps, status="")
        for step in range(steps):
            loss_dict, metrics = optimisation_step(inversion, optimizers, step, steps)
            loss = float(sum(v.detach() for v in loss_dict.values()))
            bar.update(task, advance=1, status=f"loss {loss:.4f}  PSNR {float(metrics['psnr']):.2f} dB")
    return inversion


# ----------------------------------------------------------------------------- outputs


def comparison_image(target: Float[Tensor, "h w 3"], render: Float[Tensor, "h w 3"]) -> np.ndarray:
    """input | render | error (largest channel difference times 4, black to red to yellow), one uint8 strip."""
    error = ((render - target).abs().amax(dim=-1, keepdim=True) * 4.0).clamp(0, 1)
    heat = torch.cat([(2.0 * error).clamp(max=1.0), (2.0 * error - 1.0).clamp(min=0.0), torch.zeros_like(error)], dim=-1)
    strip = torch.cat([target, render, heat], dim=1)
    return (strip.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def pose_document(inversion: Inversion, fov_deg: Optional[float] = None) -> dict:
    pose = inversion.pose(detach=True)
    c2w = torch.cat([orbit_c2w(pose), torch.tensor([[0.0, 0.0, 0.0, 1.0]], device=pose.device)])
    focal, res = inversion.target.focal, inversion.target.resolution
    return {
        **describe_pose(pose),
        "camera_to_world": c2w.cpu().tolist(),
        "fov_deg": math.degrees(2 * math.atan(0.5 * res / focal)),
        "resolution": res,
        "convention": "OpenGL camera (looks down -z, +y up), z-up world, as nerfstudio and the collections",
    }


def write_results(inversion: Inversion, out_dir: Path, fingerprint: str, info: dict) -> list[Path]:
    """codes.safetensors (pose as extra tensors), pose.json and comparison.png in `out_dir`, each atomically."""
    from PIL import Image

    from clipnerf_ns.editing.codes_io import save_codes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    render = inversion.render()["rgb"]
    document = {**pose_document(inversion), "psnr": float(psnr(render, inversion.target.rgb))}
    c2w = torch.tensor(document["camera_to_world"])
    info = {"source": "inversion", **info, "psnr": document["psnr"], "pose": describe_pose(inversion.pose(detach=True))}
    written = [save_codes(out_dir / "codes.safetensors", inversion.result_codes(), fingerprint, info,
                          extra={"camera_to_world": c2w, "pose": inversion.pose(detach=True).cpu()})]
    written.append(_atomic(out_dir / "pose.json", lambda p: p.write_text(json.dumps(document, indent=1))))
    strip = comparison_image(inversion.target.rgb, render)
    written.append(_atomic(out_dir / "comparison.png", lambda p: Image.fromarray(strip).save(p, format="png")))
    return written


def _atomic(path: Path, write) -> Path:
    partial = partial_path(path)
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def check_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace earlier results unless asked (checked before any work)."""
    existing = [name for name in OUTPUT_FILES if (Path(out_dir) / name).exists()]
    if existing and not overwrite:
        raise UserError(f"{Path(out_dir) / existing[0]}: exists (pass --overwrite to replace it)")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")


def staged_output(out_dir: Path) -> Path:
    """A fresh sibling folder to write into; `publish` moves its files into `out_dir` at the end."""
    out_dir = Path(out_dir)
    remove_stale_partials(out_dir)
    stage = partial_path(out_dir)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def publish(stage: Path, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    if not out_dir.exists():
        stage.replace(out_dir)
        return
    for item in stage.iterdir():
        item.replace(out_dir / item.name)
    stage.rmdir()


# ----------------------------------------------------------------------------- `clipnerf invert`


def invert_to_folder(load_config: Path, image: Path, mask: Optional[Path], out_dir: Path, config: InversionConfig,
                     overwrite: bool = False, progress: bool = True) -> tuple[Path, dict]:
    """Invert `image` into the run of `load_config` and write the results into `out_dir`:
    codes.safetensors, pose.json, comparison.png and a config.yml that ns-render / ns-viewer load
    to show the inverted object. Every check happens before anything is written; the files are
    written into a staging folder and moved into place at the end."""
    from clipnerf_ns.editing.codes_io import model_fingerprint
    from clipnerf_ns.models.clip_nerf import ClipNerfModelConfig
    from clipnerf_ns.runs import load_run, nerf_of, read_run_config, write_render_config

    check_output_dir(out_dir, overwrite)
    config.check()
    with output_lock(out_dir):  # a second inversion into the same folder stops at once
        photo = read_photo(image, mask, config.mask_threshold)
        run_config = read_run_config(load_config)
        _, pipeline = load_run(load_config)
        model = nerf_of(pipeline)
        model.requires_grad_(False)
        model.eval()
        clip = load_clip_for(config, model.box_min.device)
        inversion = start_inversion(model, photo, config, run_config.pipeline.datamanager.data, clip)
        run_inversion(inversion, config.steps, progress)
        info = {"image": str(image), "mask": str(mask) if mask else photo.mask_source, "stage1": str(load_config),
                "steps": config.steps, "seed": config.seed, "method": "clipnerf invert"}
        stage = staged_output(out_dir)
        try:
            write_results(inversion, stage, model_fingerprint(model.field), info)
            if isinstance(run_config.pipeline.model, ClipNerfModelConfig):
                run_config.pipeline.model.render_codes = (Path(out_dir) / "codes.safetensors").resolve()
                write_render_config(run_config, stage, overwrite=True)
            document = json.loads((stage / "pose.json").read_text())
            publish(stage, out_dir)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return Path(out_dir), document
