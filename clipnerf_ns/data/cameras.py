"""Cameras on an orbit around the object, in one place: poses (numpy, for the mesh renderer and
the collections), nerfstudio `Cameras` of them, and the differentiable pose and rays the
inversion optimises.

Conventions (nerfstudio's and Blender's): a camera-to-world matrix whose camera looks down its
-z axis with +y up, pixel centres at half-integer coordinates; the world is z-up, the object at
the origin. Where a camera sits (`Orbit`: its distance and field of view) is the collection's:
a run reads it from its training cameras (`orbit_of_cameras`), nothing assumes it.

torch and nerfstudio are imported inside the functions that use them: the command line imports
this module at start-up, long before it needs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from clipnerf_ns.data.render import Intrinsics

if TYPE_CHECKING:
    import torch
    from jaxtyping import Float, Int
    from nerfstudio.cameras.cameras import Cameras
    from torch import Tensor

VIEW_DEG = (40.0, 25.0)
"""(azimuth, elevation) in degrees of the single views our commands show: before/after images,
edit evaluation, the viewer's first camera."""


@dataclass(frozen=True)
class Orbit:
    """Where a collection's cameras sit: on a sphere of `distance` around the object, with a
    horizontal field of view of `fov_deg`. The defaults are the procedural collections'."""

    distance: float = 2.2
    fov_deg: float = 40.0


def orbit_of_cameras(c2ws: np.ndarray, fx: np.ndarray, widths: np.ndarray) -> Orbit:
    """The orbit of a set of cameras (n, 3|4, 4) with focal lengths and widths in pixels (n,):
    their median distance from the origin and median horizontal field of view."""
    distance = float(np.median(np.linalg.norm(np.asarray(c2ws)[:, :3, 3], axis=-1)))
    fov = np.degrees(2.0 * np.arctan(0.5 * np.asarray(widths, dtype=np.float64) / np.asarray(fx, dtype=np.float64)))
    return Orbit(distance, float(np.median(fov)))


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world (4, 4) for a camera at `eye` looking at `target` (OpenGL: looks down -z)."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    norm = np.linalg.norm(right)
    if norm < 1e-8:
        raise ValueError(f"look_at: view direction {forward} is parallel to up {up}")
    right /= norm
    cam_up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, cam_up, -forward, eye
    return c2w


def orbit_direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector from the origin towards a camera at `azimuth_deg` (from +x towards +y) and
    `elevation_deg` (z-up)."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


def orbit_pose(radius: float, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Camera on a sphere around the origin (z-up), looking at the origin."""
    return look_at(radius * orbit_direction(azimuth_deg, elevation_deg))


def band_elevations(n: int, rng: np.random.Generator, elevation_range_deg: tuple[float, float]) -> np.ndarray:
    """`n` elevations in degrees, uniform by area on the sphere's band between the two (uniform in
    sine), so that views are as dense near the top as near the horizon."""
    lo, hi = np.sin(np.radians(elevation_range_deg))
    return np.degrees(np.arcsin(rng.uniform(lo, hi, size=n)))


def hemisphere_poses(
    n: int, radius: float, rng: np.random.Generator, elevation_range_deg: tuple[float, float] = (5.0, 65.0)
) -> np.ndarray:
    """`n` cameras drawn uniformly by area on a band of the upper hemisphere, all looking at the origin."""
    elevations = band_elevations(n, rng, elevation_range_deg)
    azimuths = rng.uniform(0.0, 360.0, size=n)
    return np.stack([orbit_pose(radius, a, e) for a, e in zip(azimuths, elevations)])


def ring_poses(n: int, radius: float, elevation_deg: float = 25.0) -> np.ndarray:
    """`n` evenly spaced cameras on a horizontal ring: the fixed evaluation views."""
    return np.stack([orbit_pose(radius, 360.0 * i / n + 15.0, elevation_deg) for i in range(n)])


def make_cameras(
    c2ws: np.ndarray, intrinsics: list[tuple], object_index: Optional[torch.Tensor] = None
) -> Cameras:
    """Pinhole Cameras from (n, 3|4, 4) OpenGL camera-to-world poses and (fx, fy, cx, cy, w, h) rows.

    With `object_index` ((n, 1) long) every ray says which object it sees; without it the model
    renders its display codes.
    """
    import torch
    from nerfstudio.cameras.cameras import Cameras, CameraType

    k = torch.tensor(intrinsics, dtype=torch.float64)
    return Cameras(
        camera_to_worlds=torch.from_numpy(np.asarray(c2ws)[:, :3, :4]).float(),
        fx=k[:, 0:1].float(),
        fy=k[:, 1:2].float(),
        cx=k[:, 2:3].float(),
        cy=k[:, 3:4].float(),
        width=k[:, 4:5].long(),
        height=k[:, 5:6].long(),
        camera_type=CameraType.PERSPECTIVE,
        metadata=None if object_index is None else {"object_index": object_index},
    )


def orbit_camera(resolution: int, azimuth_deg: float, elevation_deg: float, orbit: Orbit = Orbit()) -> Cameras:
    """One square pinhole camera on `orbit`, looking at the origin (z up)."""
    k = Intrinsics.from_fov(resolution, resolution, orbit.fov_deg)
    c2w = orbit_pose(orbit.distance, azimuth_deg, elevation_deg)[None]
    return make_cameras(c2w, [(k.fx, k.fy, k.cx, k.cy, k.width, k.height)])


# ----------------------------------------------------------------------------- differentiable


MAX_ELEVATION = math.radians(85.0)


def orbit_vector(azimuth_deg: float, elevation_deg: float, distance: float) -> Float[Tensor, "7"]:
    """The pose vector of `orbit_c2w` for a camera on an orbit around the origin, no roll."""
    import torch

    return torch.tensor([math.radians(azimuth_deg), math.radians(elevation_deg), distance, 0.0, 0.0, 0.0, 0.0])


def orbit_c2w(pose: Float[Tensor, "7"]) -> Float[Tensor, "3 4"]:
    """Camera-to-world of pose (azimuth, elevation, distance, roll, look-at x, y, z), differentiable.

    Angles in radians; the camera sits on a sphere around the look-at point and looks at it,
    rolled about its viewing axis: `orbit_pose` for zero roll and look-at, in torch."""
    import torch
    import torch.nn.functional as F

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


def pixel_grid(resolution: int, device=None) -> Int[Tensor, "pixels 2"]:
    """(row, col) of every pixel, row-major."""
    import torch

    rows, cols = torch.meshgrid(torch.arange(resolution, device=device), torch.arange(resolution, device=device), indexing="ij")
    return torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=-1)


def camera_rays(
    c2w: Float[Tensor, "3 4"], focal: float, resolution: int, pixels: Int[Tensor, "rays 2"]
) -> tuple[Float[Tensor, "rays 3"], Float[Tensor, "rays 3"]]:
    """Origins and unit directions through pixel centres of a square pinhole camera (principal
    point at the centre), differentiable in `c2w`; the same rays nerfstudio's Cameras make."""
    import torch
    import torch.nn.functional as F

    centre = resolution / 2.0
    u = pixels[:, 1].to(c2w.dtype) + 0.5
    v = pixels[:, 0].to(c2w.dtype) + 0.5
    local = torch.stack([(u - centre) / focal, -(v - centre) / focal, -torch.ones_like(u)], dim=-1)
    directions = F.normalize(local @ c2w[:, :3].T, dim=-1)
    return c2w[:, 3].expand_as(directions), directions
