"""The options of an inversion, in a light module: `clipnerf --help` and the method configs read
them without importing torch or nerfstudio (invert.py does the work)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from clipnerf_ns.errors import UserError


@dataclass
class InversionConfig:
    """How an image is inverted into (pose, z_s, z_a)."""

    steps: int = 300
    """Optimisation steps (`clipnerf invert`; ns-train uses --max-num-iterations)."""
    resolution: int = 64
    """Working resolution: the image is padded to a square and resized to this many pixels."""
    fov: Optional[float] = None
    """Horizontal field of view of the image in degrees; default: the run's collection's (40 for ours)."""
    distance: Optional[float] = None
    """Initial camera distance from the object's centre; default: the run's collection's (2.2 for ours)."""
    schedule: Literal["alternating", "joint"] = "alternating"
    """Alternate pose / shape / appearance blocks (the paper), or optimise all three at every step."""
    phase_steps: int = 10
    """Steps of each block of the alternating schedule."""
    noise: float = 1.0
    """Initial scale of the Gaussian noise on the codes, in prior standard deviations; 0 turns it off."""
    noise_fraction: float = 0.5
    """Fraction of the steps over which the noise scale decays linearly to 0."""
    clip_weight: float = 0.0
    """Weight of the CLIP distance between render and image; 0 never loads CLIP."""
    clip_model: str = "compact"
    """CLIP for the CLIP term (see `clipnerf_ns.clip.config.ClipConfig.model`)."""
    clip_checkpoint: Optional[Path] = None
    """Local weights for the CLIP term (see `ClipConfig.checkpoint`)."""
    silhouette_weight: float = 1.0
    """Weight of the L2 between the render's opacity and the foreground mask."""
    prior_weight: float = 1e-3
    """Weight of the mean squared code in prior units (keeps the codes plausible)."""
    camera: Literal["sphere", "orbit", "free"] = "sphere"
    """Camera freedom: azimuth and elevation on the collection's camera sphere ("sphere"), also the
    distance ("orbit"), or also roll and a look-at offset ("free", for photos not taken on an orbit)."""
    rays_per_step: int = 0
    """Random pixels rendered per step; 0 renders every pixel (always every pixel with the CLIP term)."""
    search_azimuths: int = 12
    """Azimuths of the coarse pose search (evenly spaced over 360 degrees)."""
    search_elevations: tuple[float, ...] = (5.0, 20.0, 35.0, 50.0, 65.0)
    """Elevations of the coarse pose search, in degrees."""
    search_samples: int = 16
    """Samples per ray of the coarse search's renders (no fine pass)."""
    search_resolution: int = 24
    """Resolution of the coarse search's renders."""
    search_codes: Literal["mean", "training"] = "training"
    """Codes the coarse search renders: the prior mean only, or also every training object's."""
    init_codes: Literal["mean", "search"] = "search"
    """Initial codes: the prior mean (the paper), or those of the search's winner."""
    search_candidates: int = 4
    """Best views of the coarse search that are each refined briefly before the full optimisation."""
    search_gap: float = 45.0
    """Least azimuth difference (degrees) between two candidate views."""
    search_steps: int = 40
    """Joint optimisation steps (at the search resolution) refining each candidate view; 0 keeps the best view."""
    grid_every: int = 10
    """Steps between refreshes of the occupancy grid of the current shape code."""
    mask_threshold: float = 0.1
    """Without alpha channel or mask file: pixels further than this from the border colour are foreground."""
    seed: int = 0
    """Seed of the noise and the ray subsets: the same seed gives the same result."""

    def problems(self) -> list[str]:
        found = []
        if self.steps < 1:
            found.append(f"--steps must be at least 1, got {self.steps}")
        if not 8 <= self.resolution <= 1024:
            found.append(f"--resolution must be between 8 and 1024, got {self.resolution}")
        if self.fov is not None and not 1.0 <= self.fov <= 150.0:
            found.append(f"--fov must be between 1 and 150 degrees, got {self.fov}")
        if self.distance is not None and self.distance <= 0:
            found.append(f"--distance must be positive, got {self.distance}")
        if self.phase_steps < 1 or self.grid_every < 1:
            found.append("--phase-steps and --grid-every must be at least 1")
        if self.noise < 0 or not 0 < self.noise_fraction <= 1:
            found.append("--noise must be at least 0 and --noise-fraction in (0, 1]")
        if min(self.clip_weight, self.silhouette_weight, self.prior_weight) < 0:
            found.append("loss weights must be at least 0")
        if self.search_azimuths < 1 or not self.search_elevations or self.search_resolution < 8 or self.search_candidates < 1:
            found.append("the pose search needs an azimuth, an elevation and a resolution of at least 8")
        return found

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise UserError("; ".join(problems))
