import math

import torch

from clipnerf_ns.models.rendering import (
    composite,
    composite_weights,
    grid_cell_centers,
    importance_samples,
    interval_edges,
    occupancy_from_density,
    occupied,
    ray_box_interval,
    render_rays,
    stratified_samples,
)

BOX_MIN, BOX_MAX = torch.full((3,), -0.5), torch.full((3,), 0.5)


def test_compositing_matches_hand_computed_weights():
    sigma = torch.tensor([[1.0, 2.0, 0.0, 4.0]])
    deltas = torch.tensor([[0.5, 0.5, 1.0, 0.25]])
    # alpha_i = 1 - exp(-sigma_i delta_i); T_i = prod_{j<i} (1 - alpha_j)
    a = [1 - math.exp(-0.5), 1 - math.exp(-1.0), 0.0, 1 - math.exp(-1.0)]
    t = [1.0, math.exp(-0.5), math.exp(-1.5), math.exp(-1.5)]
    expected = torch.tensor([[t[i] * a[i] for i in range(4)]])
    weights = composite_weights(sigma, deltas)
    torch.testing.assert_close(weights, expected, atol=1e-7, rtol=0)
    colours = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0]]])
    rgb, opacity = composite(weights, colours, background=torch.tensor([[0.5, 0.5, 0.5]]))
    total = sum(t[i] * a[i] for i in range(4))
    assert abs(opacity.item() - total) < 1e-6
    w = expected[0]
    torch.testing.assert_close(
        rgb, torch.tensor([[w[0] + w[3], w[1] + w[3], w[2] + w[3]]]) + 0.5 * (1 - total), atol=1e-6, rtol=0
    )


def test_ray_box_interval():
    origins = torch.tensor([[-2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-2.0, 2.0, 0.0]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    near, far, hit = ray_box_interval(origins, directions, BOX_MIN, BOX_MAX)
    assert hit.tolist() == [True, True, False]
    torch.testing.assert_close(near[:2, 0], torch.tensor([1.5, 0.0]))
    torch.testing.assert_close(far[:2, 0], torch.tensor([2.5, 0.5]))


def test_stratified_samples_and_interval_edges():
    near, far = torch.tensor([[1.0]]), torch.tensor([[3.0]])
    t = stratified_samples(near, far, 4, jitter=False)
    torch.testing.assert_close(t, torch.tensor([[1.25, 1.75, 2.25, 2.75]]))
    torch.testing.assert_close(interval_edges(t, near, far), torch.tensor([[1.0, 1.5, 2.0, 2.5, 3.0]]))
    uneven = torch.tensor([[1.1, 1.3, 2.9]])
    torch.testing.assert_close(interval_edges(uneven, near, far), torch.tensor([[1.0, 1.2, 2.1, 3.0]]))
    jittered = stratified_samples(near.expand(100, 1), far.expand(100, 1), 4, jitter=True)
    bins = ((jittered - 1.0) / 0.5).floor()
    assert torch.equal(bins, torch.arange(4.0).expand(100, 4))


def test_importance_samples_follow_the_weights():
    edges = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    weights = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    samples = importance_samples(edges, weights, 64, jitter=False)
    inside = ((samples >= 2.0) & (samples <= 3.0)).float().mean()
    assert inside > 0.99
    assert torch.all(torch.diff(samples) >= 0)


def test_occupancy_lookup_and_dilation():
    density = torch.zeros(1, 4, 4, 4)
    density[0, 1, 2, 3] = 10.0
    grid = occupancy_from_density(density, threshold=1.0)
    assert grid.sum() == 3 * 3 * 2  # the 3x3x3 neighbourhood, clipped at the z border
    centres = grid_cell_centers(4)
    inside = occupied(grid, torch.zeros(len(centres), dtype=torch.long), centres)
    assert torch.equal(inside, grid.reshape(-1))


def constant_density(sigma: float):
    def point_fn(points, ray):
        return torch.full((points.shape[0], 1), sigma), torch.ones(points.shape[0], 3) * 0.25

    return point_fn


def test_render_rays_through_a_box_of_constant_density():
    """Opacity of a homogeneous box is 1 - exp(-sigma L), however the samples fall."""
    origins = torch.tensor([[-2.0, 0.0, 0.0], [-2.0, -2.0, 0.0], [-2.0, 3.0, 0.0]])
    directions = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), dim=-1)
    grids = torch.ones(1, 2, 2, 2, dtype=torch.bool)
    out = render_rays(
        constant_density(2.0), origins, directions, BOX_MIN, BOX_MAX, grids, torch.zeros(3, dtype=torch.long),
        num_coarse=16, num_fine=8, background=torch.ones(3, 3), jitter=True,
    )
    lengths = torch.tensor([1.0, math.sqrt(2.0), 0.0])
    expected = 1 - torch.exp(-2.0 * lengths)
    torch.testing.assert_close(out["accumulation"][:, 0], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["rgb"][:, 0], 0.25 * expected + (1 - expected), atol=1e-5, rtol=0)


def test_empty_cells_are_never_evaluated():
    calls = []

    def point_fn(points, ray):
        calls.append(points)
        return torch.full((points.shape[0], 1), 5.0), torch.zeros(points.shape[0], 3)

    grids = torch.zeros(1, 4, 4, 4, dtype=torch.bool)
    grids[0, 2:, :, :] = True  # only x > 0 is occupied
    origins = torch.tensor([[-2.0, 0.1, 0.1]])
    out = render_rays(
        point_fn, origins, torch.tensor([[1.0, 0.0, 0.0]]), BOX_MIN, BOX_MAX, grids,
        torch.zeros(1, dtype=torch.long), num_coarse=32, num_fine=16, background=torch.ones(1, 3), jitter=False,
    )
    evaluated = torch.cat(calls)
    assert len(evaluated) > 0 and (evaluated[:, 0] >= 0).all()
    torch.testing.assert_close(out["accumulation"][0, 0], torch.tensor(1 - math.exp(-5.0 * 0.5)), atol=0.02, rtol=0)
    # density 5 from x = 0 (distance 2) to the box's side (distance 2.5): mean depth of that exponential
    expected_depth = 2.0 + 1 / 5.0 - 0.5 * math.exp(-2.5) / (1 - math.exp(-2.5))
    assert abs(out["depth"][0, 0].item() - expected_depth) < 0.02
