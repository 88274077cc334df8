"""Volume-rendering maths as pure functions of tensors: ray/box clipping, sampling, occupancy
lookups and compositing. The field is passed in; nothing here keeps state.

Samples along a ray are sorted distances `t` in [near, far]; sample i stands for the interval
between the midpoints to its neighbours (the first from `near`, the last to `far`), so the
intervals tile [near, far] exactly, whatever the samples are.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

# (points in [-1, 1]^3, rays of the points) -> (sigma, rgb) of those points
PointFn = Callable[[Float[Tensor, "points 3"], Int[Tensor, " points"]], tuple[Tensor, Tensor]]


def ray_box_interval(
    origins: Float[Tensor, "rays 3"],
    directions: Float[Tensor, "rays 3"],
    box_min: Float[Tensor, "3"],
    box_max: Float[Tensor, "3"],
) -> tuple[Float[Tensor, "rays 1"], Float[Tensor, "rays 1"], Bool[Tensor, " rays"]]:
    """Entry and exit distances of each ray through an axis-aligned box (slab method), and a hit mask."""
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0 = (box_min - origins) / safe
    t1 = (box_max - origins) / safe
    near = torch.minimum(t0, t1).amax(dim=-1, keepdim=True).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(dim=-1, keepdim=True)
    hit = (far > near).squeeze(-1)
    far = torch.where(hit[:, None], far, near)
    return near, far, hit


def stratified_samples(
    near: Float[Tensor, "rays 1"],
    far: Float[Tensor, "rays 1"],
    num_samples: int,
    jitter: bool,
    generator: Optional[torch.Generator] = None,
) -> Float[Tensor, "rays samples"]:
    """One sample per equal bin of [near, far]: at a uniform random spot (training) or the bin centre."""
    rays = near.shape[0]
    if jitter:
        u = torch.rand(rays, num_samples, device=near.device, dtype=near.dtype, generator=generator)
    else:
        u = torch.full((rays, num_samples), 0.5, device=near.device, dtype=near.dtype)
    steps = (torch.arange(num_samples, device=near.device, dtype=near.dtype) + u) / num_samples
    return near + (far - near) * steps


def interval_edges(
    t: Float[Tensor, "rays samples"], near: Float[Tensor, "rays 1"], far: Float[Tensor, "rays 1"]
) -> Float[Tensor, "rays samples+1"]:
    """Edges of the intervals the samples stand for: near, the midpoints, far (t must be sorted)."""
    return torch.cat([near, 0.5 * (t[:, 1:] + t[:, :-1]), far], dim=-1)


def composite_weights(
    sigma: Float[Tensor, "rays samples"], deltas: Float[Tensor, "rays samples"]
) -> Float[Tensor, "rays samples"]:
    """w_i = T_i (1 - exp(-sigma_i delta_i)) with transmittance T_i = exp(-sum_{j<i} sigma_j delta_j)."""
    optical_depth = sigma * deltas
    before = torch.cumsum(optical_depth, dim=-1) - optical_depth
    return torch.exp(-before) * (1.0 - torch.exp(-optical_depth))


def composite(
    weights: Float[Tensor, "rays samples"],
    values: Float[Tensor, "rays samples c"],
    background: Optional[Float[Tensor, "rays c"]] = None,
) -> tuple[Float[Tensor, "rays c"], Float[Tensor, "rays 1"]]:
    """sum_i w_i v_i, plus (1 - opacity) times the background; returns the value and the opacity."""
    opacity = weights.sum(dim=-1, keepdim=True)
    value = (weights[..., None] * values).sum(dim=-2)
    if background is not None:
        value = value + (1.0 - opacity) * background
    return value, opacity


def importance_samples(
    edges: Float[Tensor, "rays samples+1"],
    weights: Float[Tensor, "rays samples"],
    num_samples: int,
    jitter: bool,
    generator: Optional[torch.Generator] = None,
) -> Float[Tensor, "rays fine"]:
    """Inverse-CDF samples from the piecewise-constant pdf of `weights` over the intervals `edges`.

    A small floor on the pdf keeps every interval reachable, so a thin part missed by the coarse
    pass can still be found (and learnt).
    """
    rays, bins = weights.shape
    pdf = weights + 1e-3 * weights.sum(dim=-1, keepdim=True).clamp(min=1e-5) / bins
    pdf = pdf / pdf.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1).clamp(max=1.0)
    offsets = torch.arange(num_samples, device=edges.device, dtype=edges.dtype)
    if jitter:
        u = (offsets + torch.rand(rays, num_samples, device=edges.device, dtype=edges.dtype, generator=generator))
    else:
        u = (offsets + 0.5).expand(rays, -1)
    u = (u / num_samples).contiguous()
    bin_index = (torch.searchsorted(cdf, u, right=True) - 1).clamp(0, bins - 1)
    frac = ((u - torch.gather(cdf, 1, bin_index)) / torch.gather(pdf, 1, bin_index).clamp(min=1e-12)).clamp(0.0, 1.0)
    lo, hi = torch.gather(edges, 1, bin_index), torch.gather(edges, 1, bin_index + 1)
    return lo + frac * (hi - lo)


def semi_transparency(opacity: Tensor) -> Tensor:
    """4 a (1 - a) of each pixel's opacity a: 1 at a = 0.5, 0 where the pixel is empty or opaque
    (fog and floaters pay, solid surfaces and empty space do not)."""
    return 4.0 * opacity * (1.0 - opacity)


def normalize_points(
    points: Float[Tensor, "*batch 3"], box_min: Float[Tensor, "3"], box_max: Float[Tensor, "3"]
) -> Float[Tensor, "*batch 3"]:
    """World positions to the box's [-1, 1]^3 coordinates."""
    return (points - box_min) / (box_max - box_min) * 2.0 - 1.0


def grid_cell_centers(resolution: int, device: torch.device | str = "cpu") -> Float[Tensor, "cells 3"]:
    """Centres of a resolution^3 grid over [-1, 1]^3, x-major (index = (ix * R + iy) * R + iz)."""
    axis = (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) / resolution * 2.0 - 1.0
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def occupied(
    grids: Bool[Tensor, "grids r r r"], grid_index: Int[Tensor, " points"], points: Float[Tensor, "points 3"]
) -> Bool[Tensor, " points"]:
    """Whether each point (in [-1, 1]^3) lies in an occupied cell of its grid."""
    r = grids.shape[-1]
    cell = ((points + 1.0) * (0.5 * r)).long().clamp_(0, r - 1)
    flat = ((grid_index * r + cell[:, 0]) * r + cell[:, 1]) * r + cell[:, 2]
    return grids.reshape(-1)[flat]


def occupied_bounds(
    grid: Bool[Tensor, "r r r"], box_min: Float[Tensor, "3"], box_max: Float[Tensor, "3"]
) -> tuple[np.ndarray, np.ndarray]:
    """World-space (lo, hi) corners of the box around an occupancy grid's occupied cells (the scene
    box when none is occupied), less the half cell that the grid's dilation adds."""
    lo_box, hi_box = box_min.cpu().numpy(), box_max.cpu().numpy()
    res = grid.shape[-1]
    cells = torch.nonzero(grid.cpu()).numpy()
    if len(cells) == 0:
        return lo_box, hi_box
    cell = (hi_box - lo_box) / res
    first, last = cells.min(0), cells.max(0)
    # the outermost dilated cell's centre plus half a cell, except where the dilation met the box
    lo = np.where(first == 0, lo_box, lo_box + (first + 1.0) * cell)
    hi = np.where(last == res - 1, hi_box, lo_box + last * cell)
    return np.minimum(lo, hi), np.maximum(lo, hi)


def occupancy_from_density(
    density: Float[Tensor, "grids r r r"], threshold: float
) -> Bool[Tensor, "grids r r r"]:
    """Cells above the density threshold, dilated by one cell so thin parts between centres survive."""
    dense = (density > threshold).float()[:, None]
    return F.max_pool3d(dense, kernel_size=3, stride=1, padding=1)[:, 0] > 0.5


def evaluate_occupied(
    point_fn: PointFn,
    points: Float[Tensor, "rays samples 3"],
    keep: Bool[Tensor, "rays samples"],
    ray_ids: Optional[Int[Tensor, " rays"]] = None,
) -> tuple[Float[Tensor, "rays samples"], Float[Tensor, "rays samples 3"]]:
    """Run the field only where `keep` is set; density and colour are zero elsewhere.

    `ray_ids` names the ray of each row when the rows are a subset of the rays (default: row i is ray i).
    """
    rays, samples = keep.shape
    rows = torch.arange(rays, device=keep.device) if ray_ids is None else ray_ids
    ray_of_point = rows[:, None].expand(rays, samples)[keep]
    sigma_kept, rgb_kept = point_fn(points[keep], ray_of_point)
    sigma = points.new_zeros(rays, samples).index_put((keep,), sigma_kept.reshape(-1).to(points.dtype))
    rgb = points.new_zeros(rays, samples, 3).index_put((keep,), rgb_kept.to(points.dtype))
    return sigma, rgb


def merge_samples(
    t_a: Tensor, sigma_a: Tensor, rgb_a: Tensor, t_b: Tensor, sigma_b: Tensor, rgb_b: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Union of two sample sets along each ray, sorted by distance."""
    t, order = torch.sort(torch.cat([t_a, t_b], dim=-1), dim=-1)
    sigma = torch.gather(torch.cat([sigma_a, sigma_b], dim=-1), 1, order)
    rgb = torch.gather(torch.cat([rgb_a, rgb_b], dim=-2), 1, order[..., None].expand(-1, -1, 3))
    return t, sigma, rgb


def render_rays(
    point_fn: PointFn,
    origins: Float[Tensor, "rays 3"],
    directions: Float[Tensor, "rays 3"],
    box_min: Float[Tensor, "3"],
    box_max: Float[Tensor, "3"],
    grids: Bool[Tensor, "grids r r r"],
    grid_index: Int[Tensor, " rays"],
    num_coarse: int,
    num_fine: int,
    background: Float[Tensor, "rays 3"],
    jitter: bool,
    generator: Optional[torch.Generator] = None,
) -> dict[str, Tensor]:
    """Coarse stratified samples inside the box, then importance samples; both skip empty cells.

    Samples outside the box or in unoccupied cells of the ray's occupancy grid are never sent to
    the field (their density is zero). The fine pass composites the union of both sample sets.
    """
    near, far, hit = ray_box_interval(origins, directions, box_min, box_max)

    # Rays in the box's [-1, 1]^3 coordinates, so that a sample's position is one multiply-add.
    origins_box = normalize_points(origins, box_min, box_max)
    directions_box = directions * (2.0 / (box_max - box_min))

    def keep_mask(t: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        points = torch.addcmul(origins_box[rows, None], t[..., None], directions_box[rows, None])
        count, samples = t.shape
        cells = grid_index[rows, None].expand(count, samples).reshape(-1)
        inside = occupied(grids, cells, points.reshape(-1, 3)).reshape(count, samples)
        return points, inside & hit[rows, None]

    everything = torch.arange(origins.shape[0], device=origins.device)
    t_coarse = stratified_samples(near, far, num_coarse, jitter, generator)
    points, keep = keep_mask(t_coarse, everything)
    sigma_c, rgb_c = evaluate_occupied(point_fn, points, keep)
    edges_c = interval_edges(t_coarse, near, far)
    weights_c = composite_weights(sigma_c, torch.diff(edges_c, dim=-1))
    rgb, acc = composite(weights_c, rgb_c, background)
    depth, _ = composite(weights_c, t_coarse[..., None])
    # "rgb" first: the viewer shows the first output until the user picks another.
    out = {"rgb": rgb, "accumulation": acc, "depth": depth, "rgb_coarse": rgb, "accumulation_coarse": acc}
    # Rays the coarse pass found empty (the background, most of an object's image) skip the fine pass.
    active = torch.nonzero(acc[:, 0] > 1e-4).squeeze(-1)
    if num_fine > 0 and len(active) > 0:
        t_fine = importance_samples(edges_c[active], weights_c[active].detach(), num_fine, jitter, generator)
        points, keep = keep_mask(t_fine.detach(), active)
        sigma_f, rgb_f = evaluate_occupied(point_fn, points, keep, active)
        t, sigma, colour = merge_samples(t_coarse[active], sigma_c[active], rgb_c[active], t_fine.detach(), sigma_f, rgb_f)
        weights = composite_weights(sigma, torch.diff(interval_edges(t, near[active], far[active]), dim=-1))
        rgb_fine, acc_fine = composite(weights, colour, background[active])
        depth_fine, _ = composite(weights, t[..., None])
        out["rgb"] = rgb.index_put((active,), rgb_fine)
        out["accumulation"] = acc.index_put((active,), acc_fine)
        out["depth"] = depth.index_put((active,), depth_fine)
    out["depth"] = out["depth"] / out["accumulation"].clamp(min=1e-6)
    return out


@torch.no_grad()
def surface_normals(
    density_fn: Callable[[Tensor, Tensor], Tensor],
    origins: Float[Tensor, "rays 3"],
    directions: Float[Tensor, "rays 3"],
    depth: Float[Tensor, " rays"],
    seen: Bool[Tensor, " rays"],
    box_min: Tensor,
    box_max: Tensor,
) -> Float[Tensor, "rays 3"]:
    """World-space outward normals at each seen ray's depth, mapped to [0, 1] as nerfstudio's
    "normals" outputs are: minus the density gradient, by central differences of step 1/256 of the
    box (six density calls per ray instead of a backward pass). `density_fn(points, ray)` takes
    normalised points and the ray of each. Rays not seen get (0.5, 0.5, 0.5)."""
    normals = torch.full_like(origins, 0.5)
    rays = torch.nonzero(seen).squeeze(-1)
    if len(rays) == 0:
        return normals
    step = float((box_max - box_min).max()) / 256
    surface = origins[rays] + directions[rays] * depth[rays, None]
    offsets = torch.cat([torch.eye(3, device=origins.device), -torch.eye(3, device=origins.device)]) * step
    points = normalize_points(surface[:, None] + offsets[None], box_min, box_max).reshape(-1, 3)
    sigma = density_fn(points, rays.repeat_interleave(6)).reshape(-1, 6)
    gradient = sigma[:, :3] - sigma[:, 3:]
    normals[rays] = (0.5 - 0.5 * F.normalize(gradient, dim=-1)).clamp(0.0, 1.0)
    return normals
