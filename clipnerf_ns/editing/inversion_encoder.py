"""A feed-forward start for inversion: a small ConvNet that reads the target (the masked photo at
32 px: RGB over the render background, and the mask) and predicts the camera's azimuth, its
elevation, its distance, roll and look-at (used where `--camera orbit|free` frees them), and the
shape and appearance codes in prior units, as NeRF-GAN inversion work
(pix2nerf, StyleNeRF) starts from an encoder instead of a search.

The azimuth is a distribution over bins, not one angle: a stool or a swivel chair looks the same
from several sides, and its renders then get several peaks; the inversion refines the few most
likely ones briefly and keeps the best (`editing.invert`). The encoder is trained per stage-1 run
on cheap renders of the run's own codes (every training object, blends of two, prior draws) from
random cameras of the training views' band; no real data. Shipped as a self-describing
safetensors file beside the run's config.yml (`ENCODER_FILE`), tied to the field by its fingerprint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from clipnerf_ns.atomic import save_safetensors
from clipnerf_ns.codes import BACKGROUNDS, prior_codes, prior_units
from clipnerf_ns.data.cameras import band_elevations, camera_rays, orbit_c2w, orbit_vector, pixel_grid
from clipnerf_ns.data.photos import Target
from clipnerf_ns.editing.invert import Candidate, cheap_render, refine, search_target
from clipnerf_ns.editing.invert_config import ENCODER_FILE, EncoderTraining, InversionConfig
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.clip_nerf import ClipNerfModel
from clipnerf_ns.progress import progress_bar

FORMAT_TAG = "clipnerf_ns.inversion_encoder.v2"  # v2: the camera head (distance, roll, look-at)
MODE_SHARE = 0.2
"""Azimuth modes less likely than this share of the likeliest are not tried (a chair with a back
has one mode; a stool has two or four about as likely)."""
ELEVATION_SCALE_DEG = 30.0
"""Elevations are regressed in units of this many degrees (a unit-sized target)."""
FREE_CAMERA = {"distance_factor": 0.15, "roll_deg": 10.0, "look_at": 0.05}
"""How far the cameras of `--camera free` training renders stray from the collection's sphere
(uniform within +-): distance by this factor, roll, and a look-at offset per axis (world units).
The extras are regressed scaled by these, so each is a unit-sized target."""


class EncoderNet(nn.Module):
    """Conv stages (3x3 conv, batch norm, ReLU; a stride-2 conv ends each), the last feature map
    flattened (where the parts are says where the camera is), one hidden layer, four heads."""

    def __init__(self, resolution: int, d_shape: int, d_app: int, bins: int, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        self.resolution = resolution
        layers: list[nn.Module] = []
        c_in = 4
        for width in widths:
            layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                       nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c_in = width
        self.trunk = nn.Sequential(*layers)
        side = resolution // 2 ** len(widths)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, 256), nn.ReLU(inplace=True))
        # camera: log distance ratio, roll, look-at (x, y, z), each in units of FREE_CAMERA
        self.sizes = {"azimuth": bins, "elevation": 1, "camera": 5, "u_s": d_shape, "u_a": d_app}
        self.head = nn.Linear(256, sum(self.sizes.values()))

    def forward(self, x: Float[Tensor, "b 4 s s"]) -> dict[str, Tensor]:
        out = self.head(self.hidden(self.trunk(x)))
        return dict(zip(self.sizes, out.split(list(self.sizes.values()), dim=1)))

    def start(self, model: ClipNerfModel, target: Target, config: InversionConfig, distance: float) -> Candidate:
        """The inversion's starting point: the likeliest azimuths (`search_candidates` modes at least
        `search_gap` apart: a symmetric object has several), each with the predicted elevation, and
        with the predicted codes or those of the training object nearest to them (a photo of a new
        object may sit between the codes the encoder saw; a training object's decode cleanly),
        refined briefly (`invert.refine`)."""
        seen = search_target(target.to(model.box_min.device), self.resolution)
        guess = predict(self, seen.rgb, seen.mask)
        elevation = float(guess["elevation"])
        modes = azimuth_peaks(guess["azimuth"], config.search_candidates, config.search_gap)
        codes = [(guess["u_s"], guess["u_a"]), nearest_training_codes(model, guess["u_s"], guess["u_a"])]
        found = [Candidate(predicted_pose(azimuth, elevation, distance, guess["camera"], config.camera), u_s, u_a, -p)
                 for azimuth, p in modes if p >= MODE_SHARE * modes[0][1] for u_s, u_a in codes]
        return refine(model, search_target(target.to(model.box_min.device), config.search_resolution), config, found)


def predicted_pose(azimuth_deg: float, elevation_deg: float, distance: float, camera: Tensor, mode: str) -> Tensor:
    """The pose vector of a guess: azimuth and elevation, and what the camera mode frees ("orbit":
    the distance; "free": also roll and look-at) from the encoder's camera outputs; the rest as
    the collection's (distance `distance`, no roll, looking at the centre)."""
    pose = orbit_vector(azimuth_deg, elevation_deg, distance)
    if mode in ("orbit", "free"):
        pose[2] = distance * math.exp(float(camera[0]) * FREE_CAMERA["distance_factor"])
    if mode == "free":
        pose[3] = math.radians(float(camera[1]) * FREE_CAMERA["roll_deg"])
        pose[4:7] = camera[2:5].float() * FREE_CAMERA["look_at"]
    return pose


def random_cameras(count: int, rng: np.random.Generator, config: EncoderTraining, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """(pose vectors (count, 7) of `orbit_c2w`, camera targets (count, 5) in FREE_CAMERA units):
    azimuth uniform, elevation uniform by area in its band (as the collections' training views),
    and with `camera` "free" a distance, roll and look-at off the sphere."""
    az = rng.uniform(0.0, 360.0, count)
    el = band_elevations(count, rng, config.elevation_deg)
    extras = rng.uniform(-1.0, 1.0, (count, 5)) if config.camera == "free" else np.zeros((count, 5))
    extras[:, 0] = np.log1p(extras[:, 0] * FREE_CAMERA["distance_factor"]) / FREE_CAMERA["distance_factor"]
    poses = np.zeros((count, 7))
    poses[:, 0], poses[:, 1] = np.radians(az), np.radians(el)
    poses[:, 2] = distance * np.exp(extras[:, 0] * FREE_CAMERA["distance_factor"])
    poses[:, 3] = np.radians(extras[:, 1] * FREE_CAMERA["roll_deg"])
    poses[:, 4:7] = extras[:, 2:5] * FREE_CAMERA["look_at"]
    return poses, extras


def nearest_training_codes(model: ClipNerfModel, u_s: Tensor, u_a: Tensor) -> tuple[Tensor, Tensor]:
    """The codes (prior units) of the training object nearest to (u_s, u_a)."""
    mean, std = model.code_prior()
    table = model.object_codes(torch.arange(model.num_objects, device=model.box_min.device)).detach()
    t_s, t_a = (t.cpu() for t in prior_units(mean, std, table))
    nearest = int(((t_s - u_s).pow(2).sum(1) + (t_a - u_a).pow(2).sum(1)).argmin())
    return t_s[nearest], t_a[nearest]


def encoder_input(rgb: Float[Tensor, "b s s 3"], mask: Float[Tensor, "b s s"]) -> Float[Tensor, "b 4 s s"]:
    """The network's input: RGB and mask, centred on 0.5."""
    return torch.cat([rgb, mask[..., None]], dim=-1).permute(0, 3, 1, 2) - 0.5


def soft_azimuth_labels(azimuth_deg: Float[Tensor, " b"], bins: int, width_bins: float = 1.0) -> Float[Tensor, "b bins"]:
    """A circular Gaussian over the azimuth bins around each true azimuth (bin k centred on k * 360 / bins)."""
    centres = torch.arange(bins, dtype=torch.float32) * 360.0 / bins
    gap = (azimuth_deg[:, None] - centres[None] + 180.0) % 360.0 - 180.0
    weights = torch.exp(-0.5 * (gap / (width_bins * 360.0 / bins)) ** 2)
    return weights / weights.sum(dim=1, keepdim=True)


def azimuth_peaks(probabilities: Float[Tensor, " bins"], count: int, min_gap_deg: float) -> list[tuple[float, float]]:
    """Up to `count` (azimuth in degrees, probability) modes of a circular distribution over bins,
    most likely first, at least `min_gap_deg` apart; each mode's azimuth is the circular mean of
    its bin and the two beside it."""
    bins = len(probabilities)
    step = 360.0 / bins
    p = probabilities.detach().cpu().double()
    peaks: list[tuple[float, float]] = []
    for k in torch.argsort(p, descending=True).tolist():
        near = [(k + d) % bins for d in (-1, 0, 1)]
        angles = torch.tensor([math.radians((k + d) * step) for d in (-1, 0, 1)], dtype=torch.float64)
        weights = p[near]
        azimuth = math.degrees(math.atan2(float((weights * angles.sin()).sum()), float((weights * angles.cos()).sum()))) % 360.0
        if all(min(abs(azimuth - a) % 360.0, 360.0 - abs(azimuth - a) % 360.0) >= min_gap_deg for a, _ in peaks):
            peaks.append((azimuth, float(weights.sum())))
        if len(peaks) == count:
            break
    return peaks


# ----------------------------------------------------------------------------- training data


def _training_codes(model: ClipNerfModel, count: int, rng: np.random.Generator) -> list[tuple[Tensor, Tensor, Optional[int]]]:
    """`count` (u_s, u_a, object index or None) in prior units: training objects in turn, blends of
    two, and prior draws, in proportions 2 : 1 : 1 (photos of new objects fall among them)."""
    mean, std = model.code_prior()
    table = [model.object_codes(torch.tensor(i)).detach() for i in range(model.num_objects)]
    units = [prior_units(mean, std, c) for c in table]
    out = []
    for k in range(count):
        kind = k % 4
        if kind < 2:
            i = int(rng.integers(len(units)))
            out.append((*units[i], i))
        elif kind == 2:
            i, j = rng.choice(len(units), size=2, replace=len(units) < 2)
            t = float(rng.uniform(0.2, 0.8))
            out.append((torch.lerp(units[i][0], units[j][0], t), torch.lerp(units[i][1], units[j][1], t), None))
        else:
            g = torch.Generator().manual_seed(int(rng.integers(2**31)))
            out.append((torch.randn(units[0][0].shape, generator=g), torch.randn(units[0][1].shape, generator=g), None))
    return out


@torch.no_grad()
def render_training_set(model: ClipNerfModel, config: EncoderTraining) -> dict[str, Tensor]:
    """Cheap renders (coarse samples only, as the search) of the run's codes from random views
    (`random_cameras`): inputs (n, 4, r, r), azimuths and elevations (n,) in degrees, camera extras
    (n, 5) in FREE_CAMERA units, codes (n, d) in prior units."""
    rng = np.random.default_rng(config.seed)
    mean, std = model.code_prior()
    res = config.resolution
    focal = 0.5 * res / math.tan(math.radians(model.orbit.fov_deg) / 2)
    pixels = pixel_grid(res, "cpu")
    background = torch.tensor(BACKGROUNDS[model.config.render_background])
    codes = _training_codes(model, -(-config.renders // config.views_per_code), rng)
    columns: dict[str, list[Tensor]] = {k: [] for k in ("x", "azimuth", "elevation", "camera", "u_s", "u_a")}
    with progress_bar() as progress:
        bar = progress.add_task("rendering the encoder's training views", total=len(codes) * config.views_per_code, status="")
        for us, ua, index in codes:
            z = prior_codes(mean, std, us, ua)
            grid = model.occupancy[index][None] if index is not None else model.occupancy_for_codes(z.z_s)
            poses, extras = random_cameras(config.views_per_code, rng, config, model.orbit.distance)
            rays = [camera_rays(orbit_c2w(torch.from_numpy(pose).float()), focal, res, pixels) for pose in poses]
            origins, directions = torch.cat([r[0] for r in rays]), torch.cat([r[1] for r in rays])
            out = cheap_render(model, origins, directions, z, grid, background.expand(len(origins), 3), config.samples)
            columns["x"].append(encoder_input(out["rgb"].reshape(-1, res, res, 3), out["accumulation"].reshape(-1, res, res)))
            columns["azimuth"].append(torch.from_numpy(np.degrees(poses[:, 0])).float())
            columns["elevation"].append(torch.from_numpy(np.degrees(poses[:, 1])).float())
            columns["camera"].append(torch.from_numpy(extras).float())
            columns["u_s"].append(us.expand(config.views_per_code, -1))
            columns["u_a"].append(ua.expand(config.views_per_code, -1))
            progress.advance(bar, config.views_per_code)
    return {k: torch.cat(v) for k, v in columns.items()}


# ----------------------------------------------------------------------------- training


def encoder_loss(out: dict[str, Tensor], batch: dict[str, Tensor], bins: int) -> dict[str, Tensor]:
    """Cross-entropy of the azimuth bins against soft labels, and squared errors of the elevation
    (in ELEVATION_SCALE_DEG units) and of the codes (prior units)."""
    labels = soft_azimuth_labels(batch["azimuth"], bins)
    return {
        "azimuth": -(labels * F.log_softmax(out["azimuth"], dim=1)).sum(1).mean(),
        "elevation": F.mse_loss(out["elevation"][:, 0], batch["elevation"] / ELEVATION_SCALE_DEG),
        "camera": F.mse_loss(out["camera"], batch["camera"]),
        "codes": 0.5 * (F.mse_loss(out["u_s"], batch["u_s"]) + F.mse_loss(out["u_a"], batch["u_a"])),
    }


@torch.no_grad()
def encoder_figures(net: EncoderNet, data: dict[str, Tensor]) -> dict[str, float]:
    """On held-out renders: the azimuth error of the most likely mode and of the best of the three
    most likely (symmetric objects), the elevation error, and the codes' RMS error in prior units."""
    net.eval()
    out = net(data["x"])
    probs = out["azimuth"].softmax(1)
    first, best3 = [], []
    for p, truth in zip(probs, data["azimuth"].tolist()):
        errors = [min(abs(a - truth) % 360.0, 360.0 - abs(a - truth) % 360.0) for a, _ in azimuth_peaks(p, 3, 30.0)]
        first.append(errors[0])
        best3.append(min(errors))
    elevation_error = (out["elevation"][:, 0] * ELEVATION_SCALE_DEG - data["elevation"]).abs()
    camera_error = (out["camera"] - data["camera"]).abs()
    return {
        "azimuth_error_median_deg": float(np.median(first)),
        "azimuth_best_of_3_within_15_deg": float(np.mean(np.array(best3) <= 15.0)),
        "elevation_error_median_deg": float(elevation_error.median()),
        "distance_error_median_percent": float(camera_error[:, 0].median() * FREE_CAMERA["distance_factor"] * 100),
        "roll_error_median_deg": float(camera_error[:, 1].median() * FREE_CAMERA["roll_deg"]),
        "look_at_error_median": float(camera_error[:, 2:].median() * FREE_CAMERA["look_at"]),
        "shape_code_rms": float((out["u_s"] - data["u_s"]).pow(2).mean().sqrt()),
        "appearance_code_rms": float((out["u_a"] - data["u_a"]).pow(2).mean().sqrt()),
        "renders": len(data["x"]),
    }


def train_encoder(model: ClipNerfModel, config: EncoderTraining) -> tuple[EncoderNet, dict]:
    """Render the training set, hold out `heldout_fraction` of it, train, and measure."""
    torch.manual_seed(config.seed)
    data = render_training_set(model, config)
    n = len(data["x"])
    held = max(1, int(config.heldout_fraction * n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    train = {k: v[order[held:]] for k, v in data.items()}
    heldout = {k: v[order[:held]] for k, v in data.items()}
    d_shape, d_app = model.config.field.shape_dim, model.config.field.appearance_dim
    net = EncoderNet(config.resolution, d_shape, d_app, config.azimuth_bins)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=max(config.steps, 1), pct_start=0.05)
    g = torch.Generator().manual_seed(config.seed + 1)
    with progress_bar() as progress:
        bar = progress.add_task("training the inversion encoder", total=config.steps, status="")
        for step in range(config.steps):
            net.train()
            idx = torch.randint(len(train["x"]), (config.batch_size,), generator=g)
            batch = {k: v[idx] for k, v in train.items()}
            losses = encoder_loss(net(batch["x"]), batch, config.azimuth_bins)
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            progress.update(bar, advance=1, status=" ".join(f"{k} {float(v.detach()):.3f}" for k, v in losses.items()))
    return net.eval(), encoder_figures(net, heldout)


# ----------------------------------------------------------------------------- files


def save_encoder(path: Path, net: EncoderNet, fingerprint: str, config: EncoderTraining, figures: dict) -> Path:
    """A self-describing safetensors file: the architecture, the field it was made for, the
    training settings and the held-out figures in its metadata."""
    metadata = {
        "format": FORMAT_TAG, "model": fingerprint, "resolution": str(config.resolution),
        "sizes": json.dumps(net.sizes), "training": json.dumps({k: str(v) for k, v in vars(config).items()}),
        "figures": json.dumps(figures),
    }
    return save_safetensors(net.state_dict(), metadata, path)


def load_encoder(path: Path, fingerprint: str) -> EncoderNet:
    """The encoder in `path`, made for the field with this fingerprint (one-line errors otherwise)."""
    from safetensors import SafetensorError, safe_open  # deferred: only when an encoder is used

    try:
        with safe_open(str(path), framework="pt") as f:
            tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable inversion encoder ({' '.join(str(err).split())})") from None
    if metadata.get("format") != FORMAT_TAG:
        raise UserError(f"{path}: not an inversion encoder of this clipnerf (format {metadata.get('format')!r}, expected "
                        f"{FORMAT_TAG!r}); train one with clipnerf train-encoder")
    if metadata.get("model") != fingerprint:
        raise UserError(f"{path}: this encoder was trained for another field (fingerprint {metadata.get('model')}, "
                        f"the run's is {fingerprint}); train one with clipnerf train-encoder")
    try:
        sizes = json.loads(metadata["sizes"])
        net = EncoderNet(int(metadata["resolution"]), sizes["u_s"], sizes["u_a"], sizes["azimuth"])
        net.load_state_dict(tensors)
    except (KeyError, ValueError, TypeError, RuntimeError) as err:  # a damaged or hand-made file
        raise UserError(f"{path}: a damaged inversion encoder ({' '.join(str(err).split())[:200]})") from None
    return net.eval()


def run_encoder(load_config: Path, fingerprint: str, start: str) -> Optional[EncoderNet]:
    """The encoder beside a run's config.yml for `InversionConfig.start`: None for "search", or
    for "auto" when the run has none; "encoder" without one is a one-line error."""
    path = Path(load_config).parent / ENCODER_FILE
    if start == "search" or (start == "auto" and not path.is_file()):
        return None
    if not path.is_file():
        raise UserError(f"--start encoder: {path} does not exist (clipnerf train-encoder --load-config {load_config} makes it)")
    return load_encoder(path, fingerprint)


@torch.no_grad()
def predict(net: EncoderNet, rgb: Float[Tensor, "s s 3"], mask: Float[Tensor, "s s"]) -> dict[str, Tensor]:
    """The encoder's outputs for one target already at its resolution: azimuth probabilities,
    elevation in degrees, camera extras in FREE_CAMERA units (`predicted_pose`), codes in prior units."""
    out = net(encoder_input(rgb[None].cpu(), mask[None].cpu()))
    return {"azimuth": out["azimuth"][0].softmax(0), "elevation": out["elevation"][0, 0] * ELEVATION_SCALE_DEG,
            "camera": out["camera"][0], "u_s": out["u_s"][0], "u_a": out["u_a"][0]}
