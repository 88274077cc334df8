"""Meshes and point clouds out of trained runs: `clipnerf export`, and nerfstudio's own `ns-export`
on our runs, on the shipped chairs model (real CLIs, real renderer, no mocks)."""

import time

import numpy as np
import pytest
import torch
import trimesh
import tyro
from scipy.spatial import cKDTree

from clipnerf_ns.app.pretrained import GREEN_CHAIR
from clipnerf_ns.cli import entrypoint
from clipnerf_ns.codes import model_fingerprint, save_codes
from clipnerf_ns.data.cameras import make_cameras
from clipnerf_ns.data.collection import read_collection
from clipnerf_ns.data.render import render
from clipnerf_ns.eval.metrics import delta_e, silhouette_iou
from clipnerf_ns.models.meshing import as_colored_mesh, extract_mesh, open_edge_fraction
from clipnerf_ns.models.meshing_config import MeshExtraction
from clipnerf_ns.pipelines.runs import load_run, nerf_of
from tests.helpers import run

CHAIR = GREEN_CHAIR  # the chair the demo edits


def evaluation_camera(collection_dir, object_id):
    """The collection's first evaluation view of an object: (c2w (4, 4), Intrinsics)."""
    views = next(o for o in read_collection(collection_dir).objects if o.object_id == object_id)
    index = views.view_splits["val"][0]
    return views.c2ws[index], views.intrinsics[index]


def compare_with_nerf(mesh, nerf, codes, c2w, k):
    """IoU of the mesh's and the NeRF's silhouettes from one camera, and the mean Delta E of their
    colours where both cover the pixel (the NeRF's colour with the background taken out)."""
    camera = make_cameras(c2w[None], [(k.fx, k.fy, k.cx, k.cy, k.width, k.height)])
    nerf_rgba = nerf.get_rgba_image(nerf.render_view(camera, codes))
    mesh_rgba = torch.from_numpy(render(as_colored_mesh(mesh), c2w[None], k, supersample=3, lit=False).rgba[0] / 255.0).float()
    iou = silhouette_iou(mesh_rgba[..., 3:], nerf_rgba[..., 3:])
    both = (mesh_rgba[..., 3] > 0.5) & (nerf_rgba[..., 3] > 0.5)
    return iou, float(delta_e(mesh_rgba[..., :3][both], nerf_rgba[..., :3][both]).mean())


@pytest.fixture(scope="module")
def chairs_nerf(pretrained_runs):
    _, pipeline = load_run(pretrained_runs.stage1)
    nerf = nerf_of(pipeline)
    return nerf, nerf.object_codes(torch.tensor(nerf.object_ids.index(CHAIR))).detach()


def test_exported_chair_is_closed_and_looks_like_the_nerf_from_the_evaluation_camera(pretrained_runs, chairs_nerf, tmp_path):
    nerf, codes = chairs_nerf
    out = tmp_path / "chair.glb"
    start = time.perf_counter()
    run("clipnerf", "export", "--load-config", str(pretrained_runs.stage1), "--object", CHAIR,
        "--output", str(out), "--resolution", "96")
    seconds = time.perf_counter() - start
    mesh = trimesh.load(out, force="mesh")
    assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) > 1000
    assert mesh.visual.kind == "vertex" and np.ptp(mesh.visual.vertex_colors[:, :3]) > 30
    open_edges = open_edge_fraction(mesh)
    assert mesh.is_watertight or open_edges < 0.01
    assert mesh.volume > 0  # faces wound outwards
    # In the collection's world frame: inside the unit box, standing on its floor.
    box_lo, box_hi = nerf.box_min.cpu().numpy(), nerf.box_max.cpu().numpy()
    assert (mesh.bounds[0] >= box_lo - 1e-3).all() and (mesh.bounds[1] <= box_hi + 1e-3).all()
    assert mesh.bounds[0][2] < box_lo[2] + 0.05
    iou, mean_delta_e = compare_with_nerf(mesh, nerf, codes, *evaluation_camera(pretrained_runs.data, CHAIR))
    print(f"\n{CHAIR} at 96: {len(mesh.vertices)} vertices, open edges {open_edges:.4f}, "
          f"IoU {iou:.3f}, mean Delta E {mean_delta_e:.2f}, clipnerf export {seconds:.1f} s")
    assert iou >= 0.9
    assert mean_delta_e <= 10.0


def test_export_of_a_codes_file_through_the_mapper_run_is_the_same_mesh(pretrained_runs, chairs_nerf, tmp_path, capsys):
    nerf, codes = chairs_nerf
    codes_file = save_codes(tmp_path / "codes.safetensors", codes, model_fingerprint(nerf.field), {"object": CHAIR})
    out = tmp_path / "chair.obj"
    entrypoint(["export", "--load-config", str(pretrained_runs.mappers), "--codes", str(codes_file),
                "--output", str(out), "--resolution", "48"])
    from_file = trimesh.load(out, force="mesh")
    direct = extract_mesh(nerf, codes, MeshExtraction(resolution=48))
    assert len(from_file.vertices) == len(direct.vertices)
    np.testing.assert_allclose(np.sort(from_file.vertices, axis=0), np.sort(direct.vertices, axis=0), atol=1e-5)
    assert "vertices" in capsys.readouterr().out
    # --up y: the same mesh turned for y-up tools (x stays, y up, z towards where -y was)
    entrypoint(["export", "--load-config", str(pretrained_runs.stage1), "--codes", str(codes_file),
                "--output", str(tmp_path / "chair_y.ply"), "--resolution", "48", "--up", "y"])
    turned = trimesh.load(tmp_path / "chair_y.ply", force="mesh")
    x, y, z = direct.vertices.T
    np.testing.assert_allclose(np.sort(turned.vertices, axis=0), np.sort(np.stack([x, z, -y], 1), axis=0), atol=1e-5)


def test_export_refuses_bad_requests_in_one_line(pretrained_runs, tmp_path, capsys):
    config = str(pretrained_runs.stage1)

    def refused(*args):
        with pytest.raises(SystemExit) as exit_info:
            entrypoint(["export", "--load-config", config, *args])
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("clipnerf: error:"), lines
        return lines[0]

    assert "--object" in refused("--output", str(tmp_path / "a.ply"))
    assert ".glb" in refused("--object", CHAIR, "--output", str(tmp_path / "a.stl"))
    (tmp_path / "b.ply").write_text("keep me")
    assert "--overwrite" in refused("--object", CHAIR, "--output", str(tmp_path / "b.ply"))
    assert (tmp_path / "b.ply").read_text() == "keep me"
    assert "chair_9999" in refused("--object", "chair_9999", "--output", str(tmp_path / "c.ply"))
    assert "--density-threshold" in refused("--object", CHAIR, "--output", str(tmp_path / "c.ply"), "--density-threshold", "1e9")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.ply"]  # nothing half-written


def test_a_run_loaded_for_use_shows_its_selected_object_through_training_cameras_only(chair_config):
    """What ns-export relies on: training cameras carry no object (their rays show the config's
    object), evaluation cameras keep theirs (ns-eval scores each object on its own views). And the
    outputs it asks for: straight RGBA, normals in [0, 1] facing the camera, background depth."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(chair_config, test_mode="test")
    datamanager, model = pipeline.datamanager, pipeline.model
    assert "object_index" not in (datamanager.train_dataset.cameras.metadata or {})
    assert "object_index" not in (datamanager.train_ray_generator.cameras.metadata or {})
    assert "object_index" not in (datamanager.train_dataset._dataparser_outputs.cameras.metadata or {})
    assert "object_index" in datamanager.eval_dataset.cameras.metadata
    assert model.object_ids[model.config.render_object] == CHAIR

    camera = datamanager.train_dataset.cameras[0:1]
    bundle = camera.generate_rays(camera_indices=0, keep_shape=True)
    with torch.no_grad():
        outputs = model.get_outputs_for_camera(camera)
    rgba = model.get_rgba_image(outputs)
    seen = rgba[..., 3] > 0.5
    assert seen.sum() > 50 and (rgba[..., 3][~seen] < 0.5).all()
    assert rgba[..., :3][seen].mean() < 0.8  # the chair's own colour, not blended with the white background
    normals = outputs["normals"] * 2 - 1
    assert outputs["normals"].min() >= 0 and outputs["normals"].max() <= 1
    facing = (normals[seen] * bundle.directions[seen]).sum(-1) < 0
    assert facing.float().mean() > 0.85  # 0.895 on the model shipped 6 December; flipped normals would give about 0.1
    diagonal = float(torch.linalg.norm(model.box_max - model.box_min))
    assert (outputs["depth"][~seen] > 2.2 - 0.5 * diagonal).all()  # past the box's near side, not 0: tsdf carves along them


def near_fraction(points: np.ndarray, mesh: trimesh.Trimesh, distance: float) -> float:
    """Share of `points` within `distance` of the mesh (of its densely spaced vertices)."""
    gaps, _ = cKDTree(mesh.vertices).query(points)
    return float((gaps < distance).mean())


@pytest.fixture(scope="module")
def chair_config(pretrained_runs, tmp_path_factory):
    """A config of the chairs run that selects CHAIR (`clipnerf select-object`)."""
    out = tmp_path_factory.mktemp("selected")
    run("clipnerf", "select-object", "--load-config", str(pretrained_runs.stage1), "--object", CHAIR, "--output-dir", str(out))
    return out / "config.yml"


def test_ns_export_pointcloud_is_the_chair_the_config_selects(chair_config, chairs_nerf, tmp_path):
    """It crashed before (no `renderer_rgb`; without --normal-method, no normals), and its rays
    showed every training object at once."""
    nerf, codes = chairs_nerf
    start = time.perf_counter()
    run("ns-export", "pointcloud", "--load-config", str(chair_config), "--output-dir", str(tmp_path / "rendered"),
        "--num-points", "2000", "--num-rays-per-batch", "4096", timeout=600)
    seconds = time.perf_counter() - start
    cloud = trimesh.load(tmp_path / "rendered" / "point_cloud.ply")
    assert isinstance(cloud, trimesh.PointCloud) and len(cloud.vertices) >= 1500
    chair = extract_mesh(nerf, codes, MeshExtraction(resolution=64))
    other = extract_mesh(nerf, nerf.object_codes(torch.tensor(0)).detach(), MeshExtraction(resolution=64))
    near, near_other = near_fraction(cloud.vertices, chair, 0.02), near_fraction(cloud.vertices, other, 0.02)
    print(f"\nns-export pointcloud: {len(cloud.vertices)} points, {near:.1%} within 2 cm of {CHAIR}'s mesh "
          f"({near_other:.1%} of {nerf.object_ids[0]}'s), {seconds:.0f} s")
    assert near >= 0.9 and near_other < 0.8
    # Colours are the chair's own (the white background taken out), not washed out.
    colours = np.asarray(cloud.colors)[:, :3] / 255.0
    assert colours.mean() < 0.9

    # The same with open3d's normals, through the same CLI parser in this process.
    from nerfstudio.scripts import exporter

    tyro.cli(exporter.Commands, args=["pointcloud", "--load-config", str(chair_config), "--output-dir",
                                      str(tmp_path / "estimated"), "--num-points", "1000", "--normal-method", "open3d"]).main()
    estimated = trimesh.load(tmp_path / "estimated" / "point_cloud.ply")
    assert len(estimated.vertices) >= 700 and near_fraction(estimated.vertices, chair, 0.02) >= 0.9


def test_ns_export_tsdf_meshes_the_chair_and_marching_cubes_says_what_to_use(chair_config, chairs_nerf, tmp_path, capsys):
    from nerfstudio.scripts import exporter

    nerf, codes = chairs_nerf

    def ns_export(*args):
        tyro.cli(exporter.Commands, args=list(args)).main()

    ns_export("tsdf", "--load-config", str(chair_config), "--output-dir", str(tmp_path / "tsdf"), "--resolution", "48",
              "--downscale-factor", "2", "--texture-method", "tsdf", "--use-bounding-box", "False")
    tsdf = trimesh.load(tmp_path / "tsdf" / "tsdf_mesh.ply")
    chair = extract_mesh(nerf, codes, MeshExtraction(resolution=48))
    cell = float((nerf.box_max - nerf.box_min).max()) / 48
    # The chair alone: its extent, and no surface away from it (the TSDF breaks thin legs into pieces).
    np.testing.assert_allclose(tsdf.bounds, chair.bounds, atol=3 * cell)
    assert near_fraction(tsdf.vertices, chair, 3 * cell) >= 0.93  # 0.946 on the model shipped 6 December
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        ns_export("marching-cubes", "--load-config", str(chair_config), "--output-dir", str(tmp_path / "mc"))
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "clipnerf export" in message[0]
