"""Photo-like renders of a mesh: what a photo of an object shows and a collection's views never
do (a camera aimed off the object's centre at any distance and focal length, the object framed
tight and off-centre in a portrait or landscape frame, lights from anywhere), for testing
inversion on photos of known camera (`bench/bench_photo_inversion.py`, the tests)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from clipnerf_ns.data.cameras import look_at, orbit_direction
from clipnerf_ns.data.photos import Photo
from clipnerf_ns.data.render import ColoredMesh, Intrinsics, Lighting, box_corners, framing_intrinsics, part_masks, render


def photo_camera(rng: np.random.Generator, corners: np.ndarray, size: int) -> tuple[np.ndarray, Intrinsics, np.ndarray]:
    """(c2w, intrinsics, unit direction from the object's centre to the camera) of a photo-like view
    of the object whose bounding box has `corners`."""
    azimuth, elevation, distance = rng.uniform(-90, 90), rng.uniform(5, 40), rng.uniform(1.6, 4.0)
    centre = corners.mean(0)
    eye = centre + distance * orbit_direction(azimuth, elevation)
    c2w = look_at(eye, centre + rng.normal(0.0, 0.04, 3))
    square = framing_intrinsics(corners, c2w, size, rng.uniform(0.02, 0.12))
    long_side = int(size * 4 / 3)
    shift = rng.uniform(-0.5, 0.5) * (long_side - size)  # off-centre along the long side
    if rng.random() < 0.5:  # landscape
        intrinsics = Intrinsics(long_side, size, square.fx, square.fy, square.cx + (long_side - size) / 2 + shift, square.cy)
    else:
        intrinsics = Intrinsics(size, long_side, square.fx, square.fy, square.cx, square.cy + (long_side - size) / 2 + shift)
    return c2w, intrinsics, (eye - centre) / np.linalg.norm(eye - centre)


def random_lighting(rng: np.random.Generator) -> Lighting:
    """A key light from a random direction of the upper hemisphere, a fill light opposite, ambient."""
    key = orbit_direction(rng.uniform(0, 360), rng.uniform(20, 80))
    fill = -key * np.array([1.0, 1.0, -0.3])
    return rng.uniform(0.2, 0.45), ((key, rng.uniform(0.4, 0.8)), (fill / np.linalg.norm(fill), rng.uniform(0.1, 0.3)))


@dataclass(frozen=True)
class PhotoLike:
    """A photo-like render and the truth the inversion is not told."""

    photo: Photo
    direction: np.ndarray
    """(3,) unit direction from the object's centre to the camera."""
    parts: dict[str, torch.Tensor]
    """(h, w) bool mask of each labelled part's pixels (empty for a mesh without part labels)."""


def photo_of(mesh: ColoredMesh, rng: np.random.Generator, size: int) -> PhotoLike:
    """A photo-like render of `mesh`, its short side `size` px."""
    c2w, intrinsics, direction = photo_camera(rng, box_corners(*mesh.mesh.bounds), size)
    rgba = render(mesh, c2w[None], intrinsics, lighting=random_lighting(rng)).rgba[0].astype(np.float32) / 255.0
    photo = Photo(torch.from_numpy(rgba[..., :3]), torch.from_numpy(rgba[..., 3]), "alpha")
    parts = {name: torch.from_numpy(mask) for name, mask in part_masks(mesh, c2w, intrinsics).items()}
    return PhotoLike(photo, direction, parts)


def direction_error_deg(truth: np.ndarray, pose: torch.Tensor, symmetry: int) -> float:
    """Angle between the true and the recovered camera directions, least over `symmetry` rotations."""
    azimuth, elevation = math.degrees(float(pose[0])), math.degrees(float(pose[1]))
    return min(math.degrees(math.acos(float(np.clip(orbit_direction(azimuth + k * 360.0 / symmetry, elevation) @ truth, -1, 1))))
               for k in range(symmetry))
