"""The options of an inversion, in a light module: `clipnerf --help` and the method configs read
them without importing torch or nerfstudio (invert.py does the work)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

from clipnerf_ns.errors import UserError
from clipnerf_ns.validation import MAX_COUNT, Bounds, check_numbers

ENCODER_FILE = "inversion_encoder.safetensors"
"""A run's inversion encoder, beside its config.yml (`editing.inversion_encoder`)."""


@dataclass
class InversionConfig:
    """How an image is inverted into (pose, z_s, z_a)."""

    steps: Annotated[int, Bounds(1, MAX_COUNT)] = 300
    """Optimisation steps (`clipnerf invert`; ns-train uses --max-num-iterations)."""
    resolution: Annotated[int, Bounds(8, 1024)] = 64
    """Working resolution: the image's square (--frame) is resized to this many pixels."""
    fov: Annotated[Optional[float], Bounds(1, 150)] = None
    """Horizontal field of view of the image in degrees; default: the run's collection's (40 for ours)."""
    frame: Literal["photo", "object"] = "photo"
    """How the image becomes the square working image: "photo" pads the whole image to a square
    (a view framed as the run's are, at the run's field of view or --fov's); "object" cuts a square
    centred on the object, which spans --fill of its side (a photo from an unknown camera: the
    object filling the frame, off-centre, any focal length). With "object" and no --fov the square
    is taken to have the run's field of view, and the camera's distance, roll and aim are found
    (--camera sphere then acts as free)."""
    fill: Annotated[float, Bounds(0.05, 1)] = 0.5
    """With --frame object: the share of the working image's side that the object's longer side spans
    (the chairs' training views: median 0.48, 5th to 95th percentile 0.31 to 0.66)."""
    distance: Annotated[Optional[float], Bounds(0.01, 100)] = None
    """Initial camera distance from the object's centre; default: the run's collection's (2.2 for ours)."""
    schedule: Literal["alternating", "joint"] = "alternating"
    """Alternate pose / shape / appearance blocks (the paper), or optimise all three at every step."""
    phase_steps: Annotated[int, Bounds(1, MAX_COUNT)] = 10
    """Steps of each block of the alternating schedule."""
    noise: Annotated[float, Bounds(0, 100)] = 1.0
    """Initial scale of the Gaussian noise on the codes, in prior standard deviations; 0 turns it off."""
    noise_fraction: Annotated[float, Bounds(0.001, 1)] = 0.5
    """Fraction of the steps over which the noise scale decays linearly to 0."""
    clip_weight: Annotated[float, Bounds(0, 1e6)] = 0.0
    """Weight of the CLIP distance between render and image; 0 never loads CLIP."""
    clip_model: str = "compact"
    """CLIP for the CLIP term (see `clipnerf_ns.clip.config.ClipConfig.model`)."""
    clip_checkpoint: Optional[Path] = None
    """Local weights for the CLIP term (see `ClipConfig.checkpoint`)."""
    silhouette_weight: Annotated[float, Bounds(0, 1e6)] = 1.0
    """Weight of the L2 between the render's opacity and the foreground mask."""
    prior_weight: Annotated[float, Bounds(0, 1e6)] = 1e-3
    """Weight of the mean squared code in prior units (keeps the codes plausible)."""
    camera: Literal["sphere", "orbit", "free"] = "sphere"
    """Camera freedom: azimuth and elevation on the collection's camera sphere ("sphere"), also the
    distance ("orbit"), or also roll and a look-at offset ("free", for photos not taken on an orbit)."""
    rays_per_step: Annotated[int, Bounds(0, 1 << 24)] = 0
    """Random pixels rendered per step; 0 renders every pixel (always every pixel with the CLIP term)."""
    search_azimuths: Annotated[int, Bounds(1, 360)] = 12
    """Azimuths of the coarse pose search (evenly spaced over 360 degrees)."""
    search_elevations: tuple[float, ...] = (5.0, 20.0, 35.0, 50.0, 65.0)
    """Elevations of the coarse pose search, in degrees."""
    search_samples: Annotated[int, Bounds(2, 1024)] = 16
    """Samples per ray of the coarse search's renders (no fine pass)."""
    search_resolution: Annotated[int, Bounds(8, 256)] = 24
    """Resolution of the coarse search's renders."""
    search_codes: Literal["mean", "training"] = "training"
    """Codes the coarse search renders: the prior mean only, or also every training object's."""
    init_codes: Literal["mean", "search"] = "search"
    """Initial codes: the prior mean (the paper), or those of the search's winner."""
    search_candidates: Annotated[int, Bounds(1, 64)] = 4
    """Best views of the coarse search that are each refined briefly before the full optimisation."""
    search_gap: Annotated[float, Bounds(0, 180)] = 45.0
    """Least azimuth difference (degrees) between two candidate views."""
    search_steps: Annotated[int, Bounds(0, MAX_COUNT)] = 40
    """Joint optimisation steps (at the search resolution) refining each candidate view; 0 keeps the best view."""
    grid_every: Annotated[int, Bounds(1, MAX_COUNT)] = 10
    """Steps between refreshes of the occupancy grid of the current shape code."""
    mask_threshold: Annotated[float, Bounds(0, 1)] = 0.1
    """Without alpha channel or mask file: pixels further than this from the border colour are foreground."""
    seed: int = 0
    """Seed of the noise and the ray subsets: the same seed gives the same result."""
    start: Literal["auto", "encoder", "search"] = "auto"
    """Where the optimisation starts: from the run's inversion encoder (a ConvNet's guess of the
    camera and codes, its few likeliest azimuths refined briefly; `clipnerf train-encoder` makes
    one), from the coarse search, or ("auto") from the encoder when the run has one, else the search."""
    encoder_steps: Annotated[int, Bounds(1, MAX_COUNT)] = 40
    """Optimisation steps after the encoder's start (it starts near the answer; `steps` after the search)."""
    encoder_schedule: Literal["alternating", "joint"] = "joint"
    """`schedule` after the encoder's start: near the answer, moving all three at once does best
    (measured on the shipped model, 100 steps: median 42.1 dB joint without noise, 36.6 alternating with noise)."""
    encoder_noise: Annotated[float, Bounds(0, 100)] = 0.0
    """`noise` after the encoder's start (noise helps a search start escape; it pushes a close start away)."""
    encoder_extend_below: Annotated[float, Bounds(0, 100)] = 30.0
    """After the encoder's start's steps, a fit still below this PSNR (dB) goes on to `steps` in all:
    objects outside the run's space need them (the README's 6 real chairs: 19.6 dB after 300 steps,
    18.4 after 40); 0 never extends (the viewer, for speed)."""

    def check(self) -> None:
        """One-line errors for impossible options (the ranges are the fields' `Bounds`)."""
        check_numbers(self)
        if not self.search_elevations:
            raise UserError("--search-elevations needs at least one elevation")


@dataclass
class EncoderTraining:
    """Train the inversion encoder of a stage-1 run (`clipnerf train-encoder`): a small ConvNet
    that predicts the camera and the codes of a photo, so `clipnerf invert` starts next to the
    answer instead of searching. It learns from cheap renders of the run's own codes (training
    objects, blends of two, prior draws) from random cameras; no real data."""

    load_config: Path
    """The stage-1 run's config.yml (ns-train clip-nerf or clip-nerf-small)."""
    out: Optional[Path] = None
    """The .safetensors file to write (atomically); default: inversion_encoder.safetensors beside
    the run's config.yml, where `clipnerf invert` looks for it."""
    renders: Annotated[int, Bounds(16, 10_000_000)] = 32000
    """Training renders (a tenth are held out for the figures)."""
    views_per_code: Annotated[int, Bounds(1, 1024)] = 8
    """Random views rendered of each code."""
    resolution: Annotated[int, Bounds(16, 128)] = 32
    """Input size in pixels: renders at this size, and photos' targets resized to it."""
    samples: Annotated[int, Bounds(2, 1024)] = 24
    """Samples per ray of the cheap renders (coarse only, as the coarse search)."""
    elevation_deg: tuple[float, float] = (5.0, 65.0)
    """Band of camera elevations, in degrees (the collections' training views)."""
    camera: Literal["sphere", "free"] = "free"
    """Cameras of the training renders: on the collection's sphere, or also off it ("free": distance
    +-15%, roll +-10 deg, look-at +-0.05 per axis), so the encoder also predicts what `clipnerf invert
    --camera orbit|free` frees (photos not taken on the orbit)."""
    azimuth_bins: Annotated[int, Bounds(4, 360)] = 36
    """Bins of the azimuth distribution (symmetric objects get several peaks)."""
    steps: Annotated[int, Bounds(1, 1_000_000)] = 3000
    """Optimisation steps."""
    batch_size: Annotated[int, Bounds(2, 65_536)] = 128
    """Renders per step."""
    lr: Annotated[float, Bounds(1e-9, 10)] = 2e-3
    """Peak learning rate (AdamW, one-cycle schedule)."""
    heldout_fraction: Annotated[float, Bounds(0.01, 0.5)] = 0.1
    """Share of the renders held out for the figures written into the file."""
    seed: int = 0
    """Seed of the codes, cameras, initialisation and batches."""
    overwrite: bool = False
    """Replace the output file if it exists."""

    def check(self) -> None:
        """One-line errors for impossible options."""
        check_numbers(self)
        lo, hi = self.elevation_deg
        if not -85.0 <= lo < hi <= 85.0:
            raise UserError(f"--elevation-deg must be two increasing elevations within +-85, got {lo} {hi}")
        if self.resolution % 8:
            raise UserError(f"--resolution must be a multiple of 8 (three stride-2 stages), got {self.resolution}")
