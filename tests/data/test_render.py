"""The ray-cast renderer against analytic geometry."""

import numpy as np
import pytest
import trimesh

from clipnerf_ns.data.build import ViewPlan
from clipnerf_ns.data.cameras import hemisphere_poses, look_at, ring_poses
from clipnerf_ns.data.render import ColoredMesh, Intrinsics, part_masks, pixel_rays, render

RADIUS, DISTANCE = 0.4, 2.5


def sphere(radius=RADIUS, center=(0.0, 0.0, 0.0), color=(0.8, 0.3, 0.2)) -> ColoredMesh:
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    mesh.apply_translation(center)
    return ColoredMesh.from_parts([(mesh, color)])


def analytic_distance(origins, dirs, radius, center=(0.0, 0.0, 0.0)):
    """First ray-sphere intersection distance (inf on a miss)."""
    oc = origins - np.asarray(center)
    b = np.sum(oc * dirs, axis=-1)
    disc = b**2 - (np.sum(oc**2, axis=-1) - radius**2)
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    return np.where(disc >= 0, t, np.inf)


def test_sphere_silhouette_area_matches_pinhole_model():
    intr = Intrinsics.from_fov(128, 128, 40.0)
    c2w = look_at([0.0, -DISTANCE, 0.0])
    out = render(sphere(), c2w[None], intr, supersample=4)
    area = out.rgba[0, ..., 3].astype(np.float64).sum() / 255.0
    # A sphere seen from distance d is a disc of angular radius asin(r/d): image radius f r / sqrt(d^2 - r^2).
    predicted_radius = intr.fx * RADIUS / np.sqrt(DISTANCE**2 - RADIUS**2)
    assert area == pytest.approx(np.pi * predicted_radius**2, rel=0.01)


def test_depth_is_the_analytic_hit_distance():
    intr = Intrinsics.from_fov(96, 64, 50.0)
    c2w = hemisphere_poses(1, DISTANCE, np.random.default_rng(3))[0]
    out = render(sphere(), c2w[None], intr, supersample=1)
    origins, dirs = pixel_rays(intr, c2w, np.array([[0.5, 0.5]]))
    expected = analytic_distance(origins, dirs, RADIUS).reshape(64, 96)
    depth = out.depth[0]
    hit = np.isfinite(expected) & np.isfinite(depth)
    assert hit.sum() > 500
    # The icosphere is inscribed in the true sphere: hits are a hair farther, never nearer.
    np.testing.assert_allclose(depth[hit], expected[hit], atol=2e-3)
    assert np.min(depth[hit] - expected[hit]) > -1e-4
    assert depth.min() == pytest.approx(DISTANCE - RADIUS, abs=2e-3)
    # Background stays background: no hit where the analytic ray misses by a clear margin.
    assert np.all(np.isinf(depth[np.isinf(expected)]) | (out.rgba[0, ..., 3][np.isinf(expected)] < 255))


def test_antialiasing_gives_fractional_alpha_only_on_the_silhouette():
    intr = Intrinsics.from_fov(64, 64, 40.0)
    out = render(sphere(), look_at([DISTANCE, 0, 0])[None], intr, supersample=3)
    alpha = out.rgba[0, ..., 3].astype(int)
    partial = (alpha > 0) & (alpha < 255)
    assert partial.sum() > 20
    # Partially covered pixels sit at the predicted silhouette radius from the image centre.
    rows, cols = np.nonzero(partial)
    r = np.hypot(rows + 0.5 - intr.cy, cols + 0.5 - intr.cx)
    predicted = intr.fx * RADIUS / np.sqrt(DISTANCE**2 - RADIUS**2)
    assert np.all(np.abs(r - predicted) < 1.5)
    # Straight alpha: the colour of edge pixels is the object's, not darkened towards black.
    assert out.rgba[0, ..., 0][partial].mean() > 0.5 * out.rgba[0, ..., 0][alpha == 255].mean()


def test_look_at_points_minus_z_at_the_target():
    c2w = look_at([1.0, 2.0, 0.5], target=[0.1, -0.2, 0.0])
    rot = c2w[:3, :3]
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    to_target = np.array([0.1, -0.2, 0.0]) - np.array([1.0, 2.0, 0.5])
    np.testing.assert_allclose(-rot[:, 2], to_target / np.linalg.norm(to_target), atol=1e-12)
    assert rot[2, 1] > 0  # camera up has a positive world-z component (z-up world)


@pytest.mark.parametrize("poses", [
    hemisphere_poses(64, DISTANCE, np.random.default_rng(0)),
    ring_poses(8, DISTANCE, 25.0),
    ViewPlan(views=10, eval_views=4, camera_distance=DISTANCE).cameras(np.random.default_rng(1))[0],
])
def test_every_camera_looks_at_the_object_from_the_upper_hemisphere(poses):
    intr = Intrinsics.from_fov(128, 128, 40.0)
    for c2w in poses:
        w2c = np.linalg.inv(c2w)
        x, y, z = w2c[:3, 3]  # the origin in camera coordinates
        assert z < 0  # in front of the camera (OpenGL looks down -z)
        u, v = intr.fx * x / -z + intr.cx, -intr.fy * y / -z + intr.cy
        assert (u, v) == pytest.approx((64.0, 64.0), abs=1e-6)
        assert np.linalg.norm(c2w[:3, 3]) == pytest.approx(DISTANCE)
        assert c2w[2, 3] > 0


def test_pure_numpy_intersector_renders_the_same_image(monkeypatch):
    """Without Embree the renderer falls back to trimesh's numpy ray test: same picture."""
    from trimesh.ray.ray_triangle import RayMeshIntersector

    from clipnerf_ns.data import render as render_module

    intr = Intrinsics.from_fov(40, 40, 40.0)
    c2w = look_at([0.5, -2.0, 1.0])[None]
    mesh = ColoredMesh.from_parts([(trimesh.creation.icosphere(subdivisions=2, radius=RADIUS), (0.2, 0.6, 0.9))])
    fast = render(mesh, c2w, intr, supersample=2)
    monkeypatch.setattr(render_module, "_intersector", RayMeshIntersector)
    slow = render(mesh, c2w, intr, supersample=2)
    assert np.mean(fast.rgba[0, ..., 3] != slow.rgba[0, ..., 3]) < 0.01
    hit = np.isfinite(fast.depth[0]) & np.isfinite(slow.depth[0])
    np.testing.assert_allclose(fast.depth[0][hit], slow.depth[0][hit], atol=1e-4)
    np.testing.assert_allclose(fast.rgba[0][hit].astype(int), slow.rgba[0][hit].astype(int), atol=2)


def test_framing_fills_the_frame_with_the_object_and_its_margin():
    """A box off the centre, seen from an oblique camera: framed on its corners, its silhouette
    spans the frame less the margin on its longer side and is centred on both axes."""
    from clipnerf_ns.data.cameras import orbit_pose
    from clipnerf_ns.data.render import box_corners, framing_intrinsics

    lo, hi = np.array([0.1, -0.3, -0.5]), np.array([0.3, 0.0, 0.2])
    box = trimesh.creation.box(bounds=np.stack([lo, hi]))
    mesh = ColoredMesh.from_parts([(box, (0.8, 0.2, 0.2))])
    c2w = orbit_pose(2.2, 35.0, 20.0)
    size, margin = 64, 0.1
    k = framing_intrinsics(box_corners(lo, hi), c2w, size, margin)
    alpha = render(mesh, c2w[None], k, supersample=1).rgba[0, ..., 3] > 127
    rows, cols = np.nonzero(alpha)
    extent = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    assert abs(extent - size / (1 + 2 * margin)) <= 2  # the longer side fills the frame less the margins
    for a, b in ((rows.min(), rows.max()), (cols.min(), cols.max())):
        assert abs((a + b + 1) / 2 - size / 2) <= 1.5  # centred
    # the collections' 40 degree view of the same box covers far fewer pixels
    wide = render(mesh, c2w[None], Intrinsics.from_fov(size, size, 40.0), supersample=1).rgba[0, ..., 3] > 127
    assert alpha.sum() > 2.5 * wide.sum()


def test_framing_on_a_fixed_box_keeps_sizes_and_centres_the_object():
    """Two boxes, one twice as tall and placed elsewhere, framed on a box of one fixed extent
    centred on each: both are near the centre, and the taller one spans twice the pixels (framed
    on themselves, both would fill the frame)."""
    from clipnerf_ns.data.cameras import orbit_pose
    from clipnerf_ns.data.render import box_corners, framing_corners, framing_intrinsics

    c2w = orbit_pose(2.2, 0.0, 0.0)  # from the front: heights project without foreshortening
    np.testing.assert_allclose(framing_corners([0, 0, 0], [1, 2, 3]), box_corners([0, 0, 0], [1, 2, 3]))
    heights = []
    for lo, hi in (([-0.1, -0.1, -0.5], [0.1, 0.1, -0.1]), ([0.1, -0.2, -0.5], [0.3, 0.0, 0.3])):
        mesh = ColoredMesh.from_parts([(trimesh.creation.box(bounds=np.array([lo, hi])), (0.8, 0.2, 0.2))])
        k = framing_intrinsics(framing_corners(lo, hi, (1.0, 1.0, 1.0)), c2w, 64, 0.0)
        rows, cols = np.nonzero(render(mesh, c2w[None], k, supersample=1).rgba[0, ..., 3] > 127)
        heights.append(rows.max() - rows.min() + 1)
        for a, b in ((rows.min(), rows.max()), (cols.min(), cols.max())):
            assert abs((a + b + 1) / 2 - 32) <= 4  # centred, up to the perspective of the deeper frame box
    assert abs(heights[1] / heights[0] - 2.0) < 0.15 and heights[1] < 50


def test_unlit_render_shows_the_face_colours_as_they_are():
    """For meshes whose colours already hold the light (exported from a NeRF): no second shading."""
    intr = Intrinsics.from_fov(32, 32, 40.0)
    c2w = look_at([0.0, -DISTANCE, 0.5])[None]
    lit, unlit = (render(sphere(color=(0.8, 0.3, 0.2)), c2w, intr, supersample=2, lit=flag) for flag in (True, False))
    inside = unlit.rgba[0, ..., 3] == 255
    assert inside.sum() > 100
    np.testing.assert_allclose(unlit.rgba[0][inside][:, :3], np.broadcast_to(np.array([0.8, 0.3, 0.2]) * 255, (inside.sum(), 3)), atol=1)
    assert np.abs(lit.rgba[0][inside][:, :3].astype(int) - unlit.rgba[0][inside][:, :3]).max() > 20
    np.testing.assert_array_equal(lit.rgba[..., 3], unlit.rgba[..., 3])


def test_part_masks_label_each_covered_pixel_with_its_part():
    """A procedural chair seen from the front: each pixel its centre ray hits belongs to exactly one
    part, and that part's colour is the one the unlit render shows there."""
    from clipnerf_ns.data.synth_chairs import generate_chair

    chair = generate_chair(np.random.default_rng(3))
    intr = Intrinsics.from_fov(48, 48, 40.0)
    c2w = look_at([0.3, -DISTANCE, 0.6])
    masks = part_masks(chair.mesh, c2w, intr)
    assert {"seat", "back", "base"} <= set(masks)
    unlit = render(chair.mesh, c2w[None], intr, supersample=1, lit=False).rgba[0]
    stacked = np.stack(list(masks.values()))
    np.testing.assert_array_equal(stacked.sum(0), unlit[..., 3] == 255)
    for name, mask in masks.items():
        assert mask.sum() > 0, name
        colours = chair.mesh.face_colors[chair.mesh.face_parts == name]
        np.testing.assert_allclose(unlit[mask][:, :3] / 255.0, np.broadcast_to(colours[0], (mask.sum(), 3)), atol=1 / 255)
    assert part_masks(sphere(), c2w, intr) == {}
    with pytest.raises(ValueError, match="face_parts"):  # a label per face, or none
        ColoredMesh(chair.mesh.mesh, chair.mesh.face_colors, chair.mesh.face_parts[:-1])
