"""A coloured triangle mesh of one object of the field (`clipnerf export`).

Geometry: the field's density for the object's shape code, sampled on a grid of cubic cells over
the object's occupied box, and its isosurface at a density threshold (marching cubes); pieces
much smaller than the largest are dropped as floaters. Colour: at each vertex, what a camera
looking straight at it would see (a short volume render along the inward normal). The mesh is in
the collection's world frame, so it has the object's real size and orientation (z up).
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from skimage.measure import marching_cubes

from clipnerf_ns.codes import Codes
from clipnerf_ns.data.render import ColoredMesh
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.clip_nerf import ClipNerfModel
from clipnerf_ns.models.meshing_config import MeshExtraction
from clipnerf_ns.models.part_head import part_appearance
from clipnerf_ns.models.rendering import composite_weights, normalize_points, occupied, occupied_bounds
from clipnerf_ns.progress import progress_bar
from clipnerf_ns.validation import check_numbers

DENSITY_CHUNK = 1 << 18  # grid points per field call: bounded memory, few Python round trips
COLOR_SAMPLES = 8  # samples of each vertex's colour ray
COLOR_REACH_CELLS = 1.5  # the colour ray starts this many grid cells outside the surface and ends as far inside


def grid_box(nerf: ClipNerfModel, codes: Codes, bounds: str) -> tuple[np.ndarray, np.ndarray]:
    """World (lo, hi) corners of the box the density grid covers."""
    box_lo, box_hi = nerf.box_min.cpu().numpy(), nerf.box_max.cpu().numpy()
    if bounds == "scene-box":
        return box_lo, box_hi
    lo, hi = occupied_bounds(nerf.occupancy_for_codes(codes.z_s)[0], nerf.box_min, nerf.box_max)
    # The occupancy grid is coarse and was measured at its cell centres: widen by one of its cells
    # so that no surface between the centres is cut off.
    margin = (box_hi - box_lo) / nerf.config.occupancy_resolution
    return np.maximum(lo - margin, box_lo), np.minimum(hi + margin, box_hi)


def density_grid(nerf: ClipNerfModel, z_s, lo: np.ndarray, hi: np.ndarray, resolution: int, progress, task) -> tuple[np.ndarray, float]:
    """The field's density at the corners of cubic cells over [lo, hi] ((nx, ny, nz) array, x
    major) and the cells' side; `resolution` cells along the longest side.

    Points in cells that the code's occupancy grid marks empty count as empty space without a
    field call, as they do in the renderer: what the NeRF never renders is no part of the mesh."""
    cell = float((hi - lo).max()) / resolution
    counts = np.maximum(np.ceil((hi - lo) / cell - 1e-6).astype(int), 1) + 1
    device = nerf.box_min.device
    axes = [torch.tensor(lo[i] + cell * np.arange(counts[i]), dtype=torch.float32, device=device) for i in range(3)]
    points = normalize_points(torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3),
                              nerf.box_min, nerf.box_max)
    grid = nerf.occupancy_for_codes(z_s)
    inside = torch.nonzero(occupied(grid, torch.zeros(len(points), dtype=torch.long, device=device), points)).squeeze(-1)
    density = torch.zeros(len(points), device=device)
    chunks = inside.split(DENSITY_CHUNK)
    progress.update(task, total=len(chunks))
    for chunk in chunks:
        sigma, _ = nerf.field.density(points[chunk], z_s.reshape(1, -1))
        density[chunk] = sigma.reshape(-1)
        progress.advance(task)
    return density.reshape(*counts.tolist()).cpu().numpy(), cell


def surface_colors(nerf: ClipNerfModel, codes: Codes, vertices: np.ndarray, normals: np.ndarray, reach: float,
                   progress, task) -> np.ndarray:
    """(V, 3) colour in [0, 1] that a camera looking straight at each vertex would see: a short
    volume render along the inward normal, from `reach` outside the surface to `reach` inside.

    Why this direction: the colour head takes the view direction, and a surface is best seen (and
    was best learnt) head on; the collections' shading is view independent, so any one direction
    gives the colour every camera sees. Why a render rather than the colour at the vertex: the
    isosurface is where density starts, and what a camera sees is the colour a little deeper."""
    device = nerf.box_min.device
    step = 2.0 * reach / COLOR_SAMPLES
    t = (torch.arange(COLOR_SAMPLES, device=device, dtype=torch.float32) + 0.5) * step
    shared = codes.shared()
    z_s, z_a, part_changes = shared.z_s, shared.z_a, shared.part_changes
    per_chunk = max(1, DENSITY_CHUNK // COLOR_SAMPLES)
    colours = []
    starts = range(0, len(vertices), per_chunk)
    progress.update(task, total=len(starts))
    for start in starts:
        v = torch.tensor(vertices[start : start + per_chunk], dtype=torch.float32, device=device)
        n = torch.tensor(normals[start : start + per_chunk], dtype=torch.float32, device=device)
        direction = -torch.nn.functional.normalize(n, dim=-1)
        points = (v - direction * reach)[:, None] + t[None, :, None] * direction[:, None]
        points = normalize_points(points, nerf.box_min, nerf.box_max).reshape(-1, 3)
        # a part edit's appearance code varies from point to point
        point_z_a = z_a if part_changes is None else part_appearance(nerf.part_head, points, z_s, z_a, part_changes)
        sigma, rgb = nerf.field(points, direction[:, None].expand(-1, COLOR_SAMPLES, -1).reshape(-1, 3), z_s, point_z_a)
        sigma, rgb = sigma.reshape(-1, COLOR_SAMPLES), rgb.reshape(-1, COLOR_SAMPLES, 3)
        weights = composite_weights(sigma, torch.full_like(sigma, step))
        total = weights.sum(-1, keepdim=True)
        seen = (weights[..., None] * rgb).sum(1) / total.clamp(min=1e-8)
        # a ray that meets no density (a sliver of surface) takes the field's colour at the vertex
        colours.append(torch.where(total > 1e-4, seen, rgb[:, COLOR_SAMPLES // 2]).clamp(0, 1).cpu())
        progress.advance(task)
    return torch.cat(colours).numpy() if colours else np.zeros((0, 3), dtype=np.float32)


def extract_mesh(nerf: ClipNerfModel, codes: Codes, settings: MeshExtraction) -> trimesh.Trimesh:
    """The object of `codes` (`z_s` (d_shape,), `z_a` (d_app,)) as a mesh with vertex colours, in
    world coordinates, faces wound outwards."""
    check_numbers(settings)
    codes = codes.to(nerf.box_min.device).detach()
    lo, hi = grid_box(nerf, codes, settings.bounds)
    with torch.no_grad(), progress_bar() as progress:
        grid_task = progress.add_task("density grid", total=None, status="")
        volume, cell = density_grid(nerf, codes.z_s, lo, hi, settings.resolution, progress, grid_task)
        if not volume.max() > settings.density_threshold:
            raise UserError(f"no surface: the density of this object never reaches --density-threshold "
                            f"{settings.density_threshold:g} (its highest is {volume.max():.3g}); give a lower one")
        # A layer of empty cells around the grid closes the surfaces that its sides cut.
        padded = np.pad(volume, 1, constant_values=0.0)
        vertices, faces, _, _ = marching_cubes(padded, settings.density_threshold, spacing=(cell,) * 3,
                                               allow_degenerate=False)
        # The caps close where the grid's sides cut the object: on those sides, not up to a cell
        # beyond them (towards the padding), which would put legs through the floor of the box.
        mesh = trimesh.Trimesh(np.clip(vertices + (lo - cell), lo, hi), faces, process=True)
        mesh = drop_floaters(mesh, settings.min_component_fraction)
        if mesh.volume < 0:  # wind the faces outwards (renderers and viewers light and cull by them)
            mesh.invert()
        color_task = progress.add_task("vertex colours", total=None, status=f"{len(mesh.vertices)} vertices")
        rgb = surface_colors(nerf, codes, mesh.vertices, mesh.vertex_normals, COLOR_REACH_CELLS * cell, progress, color_task)
    alpha = np.full((len(rgb), 1), 255, dtype=np.uint8)
    mesh.visual.vertex_colors = np.concatenate([np.round(rgb * 255).astype(np.uint8), alpha], axis=1)
    return mesh


def drop_floaters(mesh: trimesh.Trimesh, min_fraction: float) -> trimesh.Trimesh:
    """The mesh without connected pieces of fewer faces than `min_fraction` of the largest's."""

    if min_fraction <= 0 or len(mesh.faces) == 0:
        return mesh
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    sizes = np.bincount(labels)
    keep = sizes[labels] >= min_fraction * sizes.max()
    if keep.all():
        return mesh
    kept = mesh.submesh([np.nonzero(keep)[0]], append=True)
    kept.remove_unreferenced_vertices()
    return kept


def open_edge_fraction(mesh: trimesh.Trimesh) -> float:
    """Share of the mesh's edges that border a single face (0 for a closed surface)."""

    if len(mesh.faces) == 0:
        return 0.0
    single = trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)
    return len(single) / len(mesh.edges_unique)


def as_colored_mesh(mesh: trimesh.Trimesh):
    """An exported mesh (vertex colours) as the project's renderer takes it (a colour per face: the
    mean of its corners'). Render it with `lit=False`: its colours already hold the light."""

    corners = np.asarray(mesh.visual.vertex_colors, dtype=np.float32)[:, :3][mesh.faces]
    return ColoredMesh(mesh, corners.mean(axis=1) / 255.0)
