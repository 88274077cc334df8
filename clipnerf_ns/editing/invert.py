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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.engine.optimizers import AdamOptimizerConfig, Optimizers
from PIL import Image
from torch import Tensor, nn

from clipnerf_ns.atomic import atomic_file
from clipnerf_ns.codes import BACKGROUNDS, Codes, prior_codes, prior_units, psnr, save_codes
from clipnerf_ns.data.cameras import MAX_ELEVATION, camera_rays, orbit_c2w, orbit_vector, pixel_grid
from clipnerf_ns.data.photos import Photo, Target, comparison_image, make_target, object_window
from clipnerf_ns.editing.invert_config import InversionConfig
from clipnerf_ns.editing.losses import clip_distance
from clipnerf_ns.models.clip_nerf import ClipNerfModel
from clipnerf_ns.models.rendering import render_rays
from clipnerf_ns.progress import progress_bar

GROUPS = ("pose", "shape", "appearance")
CAMERA_FREEDOM = {"sphere": 2, "orbit": 3, "free": 7}
"""Leading entries of the pose vector (azimuth, elevation, distance, roll, look-at) each camera mode moves."""


# ----------------------------------------------------------------------------- cameras


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


class Inversion:
    """The loss of one step, renders and results of one inversion (model frozen, target fixed)."""

    def __init__(self, model: ClipNerfModel, target: Target, config: InversionConfig, variables: InversionVariables,
                 clip=None) -> None:
        self.model, self.config, self.variables, self.clip = model, config, variables, clip
        self.start, self.planned_steps = "given", config.steps  # set by `start_inversion`
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
        shared = codes.shared()  # with a part edit's changes, when it has them (an edit of the inversion)
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
    def render(self, resolution: Optional[int] = None, pose: Optional[Tensor] = None,
               codes: Optional[Codes] = None) -> dict[str, Tensor]:
        """The current (or given) codes from the current (or a given) pose, as (h, w, c) images
        framed as the target (an edit of the inverted codes, seen as the photo shows them)."""
        resolution = resolution or self.target.resolution
        focal = self.target.focal * resolution / self.target.resolution
        pose = self.pose(detach=True) if pose is None else pose.to(self.device)
        codes = self.codes() if codes is None else codes.to(self.device)
        grid = self.model.occupancy_for_codes(codes.z_s)
        out = self.render_pixels(pose, codes, pixel_grid(resolution, self.device), grid, resolution, focal)
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
    # deferred: open_clip is slow to import, and loads only for the CLIP term
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
    u_s: Float[Tensor, " d_shape"]
    u_a: Float[Tensor, " d_app"]
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
        per_view = (rgb_error.mean(-1).reshape(len(poses), -1).mean(-1)
                    + config.silhouette_weight * mask_error.reshape(len(poses), -1).mean(-1))
        u_s, u_a = prior_units(mean, std, codes)
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
    """The starting point of the coarse search: its best few (code, view) pairs, refined (`refine`)."""
    small = search_target(target.to(model.box_min.device), config.search_resolution)
    return refine(model, small, config, candidates(model, small, config, distance))


def refine(model: ClipNerfModel, small: Target, config: InversionConfig, found: list[Candidate]) -> Candidate:
    """Each candidate refined by a short joint optimisation at the search resolution; the one that
    ends with the lowest loss (the first as it is when `search_steps` is 0 or there is one)."""
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


def start_inversion(model: ClipNerfModel, photo: Photo, config: InversionConfig, clip=None, encoder=None) -> Inversion:
    """Target from the photo, initial pose and codes from the inversion encoder (when given, unless
    `config.start` is "search") or the coarse search; `Inversion.planned_steps`: the steps that start
    calls for. The photo's field of view and camera distance are the run's unless the config gives them."""
    config.check()
    fov = config.fov if config.fov is not None else model.orbit.fov_deg
    distance = config.distance if config.distance is not None else model.orbit.distance
    background = torch.tensor(BACKGROUNDS[model.config.render_background])
    framed = config.frame == "object"
    window = object_window(photo.mask, config.fill) if framed else None
    if framed and config.camera == "sphere":  # the cut fixes the object's size and place, not the camera's
        config = replace(config, camera="free")
    target = make_target(photo, config.resolution, fov, background, window, "window" if framed and config.fov is None else "photo")
    from_encoder = encoder is not None and config.start != "search"
    if from_encoder:  # an `inversion_encoder.EncoderNet`: its guess, refined
        start = encoder.start(model, target, config, distance)
        config = replace(config, schedule=config.encoder_schedule, noise=config.encoder_noise)
    else:
        start = search_start(model, target, config, distance)
    variables = InversionVariables(start.pose, *_dims(model))
    if config.init_codes == "search":
        variables.u_s.data.copy_(start.u_s)
        variables.u_a.data.copy_(start.u_a)
    variables = variables.to(model.box_min.device)
    inversion = Inversion(model, target, config, variables, clip)
    inversion.start, inversion.planned_steps = ("encoder", config.encoder_steps) if from_encoder else ("search", config.steps)
    return inversion


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


def steps_after(inversion: Inversion, done: int, psnr_db: float) -> int:
    """Steps in all once `done` are done: an encoder start still worse than `encoder_extend_below`
    dB (an object outside the run's space: a real chair) goes on to `steps`, as a search start would."""
    config = inversion.config
    if inversion.start == "encoder" and psnr_db < config.encoder_extend_below:
        return max(done, config.steps)
    return done


def run_inversion(inversion: Inversion, progress: bool = True,
                  on_step: Optional[Callable[[int, float], None]] = None) -> Inversion:
    """`inversion.planned_steps` steps (or more: `steps_after`), with a rich progress bar showing the
    loss and PSNR; `on_step` (step, PSNR in dB) after each (the viewer shows progress with it)."""
    optimizers = optimizers_for(inversion.variables)
    with progress_bar(transient=True, disable=not progress) as bar:
        task = bar.add_task("inverting", total=inversion.planned_steps, status="")
        step = 0
        while step < inversion.planned_steps:
            loss_dict, metrics = optimisation_step(inversion, optimizers, step, inversion.planned_steps)
            loss, psnr_db = float(sum(v.detach() for v in loss_dict.values())), float(metrics["psnr"])
            step += 1
            if step == inversion.planned_steps:
                inversion.planned_steps = steps_after(inversion, step, psnr_db)
            bar.update(task, advance=1, total=inversion.planned_steps, status=f"loss {loss:.4f}  PSNR {psnr_db:.2f} dB")
            if on_step is not None:
                on_step(step - 1, psnr_db)
    return inversion


# ----------------------------------------------------------------------------- results


def write_results(inversion: Inversion, out_dir: Path, fingerprint: str, info: dict) -> list[Path]:
    """codes.safetensors (pose as extra tensors), pose.json and comparison.png in `out_dir`, each
    written atomically (`clipnerf invert` writes them into a folder that `atomic_output_dir` puts
    in place; the clip-nerf-invert pipeline into its run folder)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    render = inversion.render()["rgb"]
    document = {**pose_document(inversion), "psnr": float(psnr(render, inversion.target.rgb))}
    c2w = torch.tensor(document["camera_to_world"])
    info = {"source": "inversion", **info, "psnr": document["psnr"], "pose": describe_pose(inversion.pose(detach=True))}
    written = [save_codes(out_dir / "codes.safetensors", inversion.result_codes(), fingerprint, info,
                          extra={"camera_to_world": c2w, "pose": inversion.pose(detach=True).cpu()})]
    with atomic_file(out_dir / "pose.json") as partial:
        partial.write_text(json.dumps(document, indent=1))
    with atomic_file(out_dir / "comparison.png") as partial:
        Image.fromarray(comparison_image(inversion.target.rgb, render)).save(partial, format="png")
    return [*written, out_dir / "pose.json", out_dir / "comparison.png"]


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
