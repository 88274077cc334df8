"""Ray-cast renderer for coloured triangle meshes: posed RGBA views with depth.

Cameras follow nerfstudio/Blender (OpenGL) conventions: a camera-to-world matrix whose camera
looks down its -z axis with +y up, pixel centres at half-integer coordinates. The world is z-up.
Rays are cast with Embree (through trimesh) when it is installed, else trimesh's pure-numpy
intersector (slow, but correct).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import trimesh


@dataclass
class ColoredMesh:
    """A triangle mesh with one RGB colour in [0, 1] per face."""

    mesh: trimesh.Trimesh
    face_colors: np.ndarray  # (F, 3) float32
    face_parts: Optional[np.ndarray] = None
    """(F,) the semantic part of each face ("seat", "back", ...), where labels say (PartNet chairs)."""

    def __post_init__(self) -> None:
        self.face_colors = np.asarray(self.face_colors, dtype=np.float32)
        if self.face_colors.shape != (len(self.mesh.faces), 3):
            raise ValueError(
                f"face_colors must have shape ({len(self.mesh.faces)}, 3), got {self.face_colors.shape}"
            )
        if self.face_parts is not None and len(self.face_parts) != len(self.mesh.faces):
            raise ValueError(f"face_parts must name the part of each of the {len(self.mesh.faces)} faces, got {len(self.face_parts)}")

    @staticmethod
    def from_parts(parts: list[tuple[trimesh.Trimesh, tuple[float, float, float]]],
                   names: Optional[Sequence[str]] = None) -> "ColoredMesh":
        """Concatenate (mesh, rgb) parts into one mesh with per-face colours (and, given each part's
        semantic name, per-face part labels)."""
        meshes = [m for m, _ in parts]
        colors = [np.tile(np.asarray(c, dtype=np.float32), (len(m.faces), 1)) for m, c in parts]
        face_parts = None if names is None else np.repeat(np.array(names), [len(m.faces) for m in meshes])
        return ColoredMesh(trimesh.util.concatenate(meshes), np.concatenate(colors, axis=0), face_parts)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (nerfstudio's fx, fy, cx, cy, width, height)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @staticmethod
    def from_fov(width: int, height: int, fov_x_deg: float) -> "Intrinsics":
        """Square pixels, principal point at the image centre, horizontal field of view in degrees."""
        fx = 0.5 * width / np.tan(np.radians(fov_x_deg) / 2)
        return Intrinsics(width, height, fx, fx, width / 2, height / 2)


FRAMING_MARGIN = 0.08
"""Margin (a fraction of the side) around the object in the CLIP's views: mapper training,
optimize mode, exemplars and the benches use it; CLIP training draws it from 0.03 to 0.15."""


def box_corners(lo, hi) -> np.ndarray:
    """(8, 3) corners of the axis-aligned box [lo, hi]."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return np.array([[(lo, hi)[i][0], (lo, hi)[j][1], (lo, hi)[k][2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def framing_corners(lo, hi, extent: Optional[Sequence[float]] = None) -> np.ndarray:
    """(8, 3) corners that a view is framed on (`framing_intrinsics`): those of the object's box
    [lo, hi] (the object fills the frame, whatever its size), or those of a box of fixed `extent`
    (x, y, z) centred on it (the object is centred but keeps its size: a taller back or a longer
    car fills more of the frame, as "a tall back" and "a long car" need)."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if extent is None:
        return box_corners(lo, hi)
    centre, half = 0.5 * (lo + hi), 0.5 * np.asarray(extent, dtype=np.float64)
    return box_corners(centre - half, centre + half)


def framing_intrinsics(points: np.ndarray, c2w: np.ndarray, size: int, margin: float) -> Intrinsics:
    """A square `size` x `size` camera at `c2w` whose image is the smallest square around the
    projections of `points` (N, 3), widened by `margin` (a fraction of its side) on every side.

    The object then fills the frame whatever its size or distance, so a 64 px view shows its thin
    parts (legs, slats, armrests) with two to three times the pixels of the collections' 40 degree
    views. Pure pinhole maths: the camera's principal point and focal length change, its pose does not.
    """
    w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
    cam = np.asarray(points, dtype=np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    depth = np.maximum(-cam[:, 2], 1e-6)  # the camera looks down its -z axis
    x, y = cam[:, 0] / depth, cam[:, 1] / depth
    x_c, y_c = 0.5 * (x.min() + x.max()), 0.5 * (y.min() + y.max())
    half = 0.5 * max(x.max() - x.min(), y.max() - y.min(), 1e-6) * (1.0 + 2.0 * margin)
    f = 0.5 * size / half
    # pixel u = cx + f * x and v = cy - f * y (y up in the camera, rows down in the image)
    return Intrinsics(size, size, f, f, 0.5 * size - f * x_c, 0.5 * size + f * y_c)


def pixel_rays(
    intrinsics: Intrinsics, c2w: np.ndarray, offsets: np.ndarray, pixels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays (origins, unit directions) through `pixels` at sub-pixel `offsets`.

    pixels: (P, 2) integer (row, col); None means every pixel in row-major order.
    offsets: (S, 2) offsets in [0, 1) within a pixel; 0.5, 0.5 is the pixel centre (nerfstudio).
    Returns arrays of shape (P * S, 3), pixel-major.
    """
    if pixels is None:
        rows, cols = np.mgrid[: intrinsics.height, : intrinsics.width]
        pixels = np.stack([rows.ravel(), cols.ravel()], axis=-1)
    v = (pixels[:, None, 0] + offsets[None, :, 0]).ravel()
    u = (pixels[:, None, 1] + offsets[None, :, 1]).ravel()
    dirs_cam = np.stack(
        [(u - intrinsics.cx) / intrinsics.fx, -(v - intrinsics.cy) / intrinsics.fy, -np.ones_like(u)], axis=-1
    )
    dirs = dirs_cam @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origins = np.broadcast_to(c2w[:3, 3], dirs.shape)
    return origins, dirs


def supersample_offsets(s: int) -> np.ndarray:
    """(s*s, 2) stratified sub-pixel offsets of an s x s grid."""
    g = (np.arange(s) + 0.5) / s
    return np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)


# Two fixed world-space lights (key from above-front, dim fill from the other side) plus ambient:
# view-independent Lambert shading, so each surface point has one colour from every camera.
_LIGHTS = (
    (np.array([0.45, 0.35, 0.82]) / np.linalg.norm([0.45, 0.35, 0.82]), 0.6),
    (np.array([-0.6, -0.5, 0.3]) / np.linalg.norm([-0.6, -0.5, 0.3]), 0.25),
)
_AMBIENT = 0.3
Lighting = tuple[float, tuple[tuple[np.ndarray, float], ...]]
"""(ambient, ((unit direction to the light, strength), ...)): the collections' is `(_AMBIENT, _LIGHTS)`."""


def _intersector(mesh: trimesh.Trimesh):
    """Embree when importable (fast); trimesh's numpy ray-triangle test otherwise."""
    try:
        from trimesh.ray.ray_pyembree import RayMeshIntersector

        return RayMeshIntersector(mesh)
    except (ImportError, ValueError):
        from trimesh.ray.ray_triangle import RayMeshIntersector

        return RayMeshIntersector(mesh)


def _cast(intersector, mesh: ColoredMesh, origins, dirs, lit: bool = True,
          lighting: Optional[Lighting] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shaded (or, unlit, plain) colour (R, 3), hit mask (R,) and hit distance (R,) of the first hit along each ray."""
    n = len(dirs)
    tri, ray, loc = intersector.intersects_id(origins, dirs, multiple_hits=False, return_locations=True)
    hit = np.zeros(n, dtype=bool)
    hit[ray] = True
    dist = np.full(n, np.inf)
    dist[ray] = np.linalg.norm(loc - origins[ray], axis=-1)
    color = np.zeros((n, 3))
    if not lit:
        color[ray] = mesh.face_colors[tri]
        return color, hit, dist
    normals = mesh.mesh.face_normals[tri]
    # Meshes from the wild have inconsistent winding: light the side that faces the camera.
    normals = normals * -np.sign(np.sum(normals * dirs[ray], axis=-1, keepdims=True) + 1e-12)
    ambient, lights = lighting or (_AMBIENT, _LIGHTS)
    shade = np.full(len(ray), ambient)
    for direction, strength in lights:
        shade += strength * np.clip(normals @ direction, 0.0, None)
    color[ray] = np.clip(mesh.face_colors[tri] * shade[:, None], 0.0, 1.0)
    return color, hit, dist


@dataclass
class RenderOutput:
    rgba: np.ndarray  # (N, H, W, 4) uint8, straight (not premultiplied) alpha
    depth: np.ndarray  # (N, H, W) float32: distance along the pixel-centre ray; inf on background


def render(mesh: ColoredMesh, c2ws: np.ndarray, intrinsics, supersample: int = 3, lit: bool = True,
           lighting: Optional[Lighting] = None) -> RenderOutput:
    """Render `mesh` from each camera in `c2ws` (N, 4, 4), with one `Intrinsics` for all of them or
    a sequence of N (of one size).

    `lit=False` shows the face colours as they are, for meshes whose colours already hold the
    light (exported from a NeRF trained on lit renders: lighting them again would darken them);
    `lighting` replaces the collections' lights (the photo-like renders of the inversion bench).

    Antialiasing is adaptive: one ray through each pixel centre, then `supersample`^2 stratified
    rays only for pixels on a silhouette or part boundary (where a neighbour differs), which is
    where aliasing shows, at a fraction of the cost of supersampling everything.
    """
    c2ws = np.asarray(c2ws, dtype=np.float64).reshape(-1, 4, 4)
    per_view = list(intrinsics) if isinstance(intrinsics, (list, tuple)) else [intrinsics] * len(c2ws)
    h, w = per_view[0].height, per_view[0].width
    intersector = _intersector(mesh.mesh)
    centre = np.array([[0.5, 0.5]])
    rgba = np.zeros((len(c2ws), h, w, 4), dtype=np.uint8)
    depth = np.zeros((len(c2ws), h, w), dtype=np.float32)
    for i, (c2w, intrinsics) in enumerate(zip(c2ws, per_view)):
        origins, dirs = pixel_rays(intrinsics, c2w, centre)
        color, hit, dist = _cast(intersector, mesh, origins, dirs, lit, lighting)
        color, hit = color.reshape(h, w, 3), hit.reshape(h, w).astype(np.float64)
        depth[i] = dist.reshape(h, w)
        if supersample > 1:
            edges = _edge_pixels(color, hit)
            offsets = supersample_offsets(supersample)
            o, d = pixel_rays(intrinsics, c2w, offsets, edges)
            sub_color, sub_hit, _ = _cast(intersector, mesh, o, d, lit, lighting)
            k = len(offsets)
            sub_hit = sub_hit.reshape(-1, k)
            coverage = sub_hit.mean(axis=1)
            # Straight alpha: average colour over the covered samples only.
            mean_color = (sub_color.reshape(-1, k, 3) * sub_hit[..., None]).sum(1) / np.maximum(
                sub_hit.sum(1, keepdims=True), 1
            )
            color[edges[:, 0], edges[:, 1]] = mean_color
            hit[edges[:, 0], edges[:, 1]] = coverage
        rgba[i, ..., :3] = np.round(color * 255)
        rgba[i, ..., 3] = np.round(hit * 255)
    return RenderOutput(rgba, depth)


def part_masks(mesh: ColoredMesh, c2w: np.ndarray, intrinsics: Intrinsics) -> dict[str, np.ndarray]:
    """(h, w) bool mask of each labelled part's pixels (the part of the first face each pixel-centre
    ray hits), for measuring what an edit did to a part; empty when the mesh has no part labels."""
    if mesh.face_parts is None:
        return {}
    origins, dirs = pixel_rays(intrinsics, c2w, np.array([[0.5, 0.5]]))
    tri, ray = _intersector(mesh.mesh).intersects_id(origins, dirs, multiple_hits=False)
    part = np.full(len(dirs), "", dtype=object)
    part[ray] = np.asarray(mesh.face_parts, dtype=object)[tri]
    part = part.reshape(intrinsics.height, intrinsics.width)
    return {name: part == name for name in sorted(set(mesh.face_parts))}


def _edge_pixels(color: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """(P, 2) pixels whose 4-neighbourhood differs in coverage or noticeably in colour."""
    signal = np.concatenate([color, hit[..., None]], axis=-1)
    diff = np.zeros(hit.shape, dtype=bool)
    vertical = np.abs(signal[1:] - signal[:-1]).max(-1) > 0.08
    horizontal = np.abs(signal[:, 1:] - signal[:, :-1]).max(-1) > 0.08
    diff[1:] |= vertical
    diff[:-1] |= vertical
    diff[:, 1:] |= horizontal
    diff[:, :-1] |= horizontal
    return np.argwhere(diff)
