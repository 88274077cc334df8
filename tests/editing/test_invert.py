"""Inversion: masks, cameras, the round trip on the trained markers, `clipnerf invert` and
`ns-train clip-nerf-invert` giving the same codes, and bad input."""

import copy
import json
import math

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from clipnerf_ns.codes import Codes, load_codes, model_fingerprint, read_codes_file
from clipnerf_ns.data.cameras import camera_rays, orbit_c2w, orbit_camera, orbit_pose, orbit_vector, pixel_grid
from clipnerf_ns.data.photos import Photo, make_target, object_window, read_photo
from clipnerf_ns.editing.invert import (
    InversionConfig,
    active_groups,
    noise_scale,
    rotation_error_deg,
    run_inversion,
    start_inversion,
)
from clipnerf_ns.errors import UserError
from clipnerf_ns.pipelines.runs import load_run
from tests.helpers import MARKER_CENTER, assert_user_error, clipnerf_in_process, run

# Small and quick: 24 px, a short search, a few alternating blocks.
QUICK = dict(resolution=24, steps=45, phase_steps=5, search_steps=10, search_resolution=12)


def sphere_rgba(size=40, radius=10, colour=(200, 30, 30)) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2) ** 2 + (xx - size / 2 + 4) ** 2 < radius**2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = inside * 255
    return rgba


# ----------------------------------------------------------------------------- masks


def test_mask_from_alpha(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(sphere_rgba()).save(path)
    photo = read_photo(path)
    assert photo.mask_source == "alpha"
    assert photo.mask.sum() == (sphere_rgba()[..., 3] > 0).sum()


def test_mask_from_file_wins_and_must_match_the_size(tmp_path):
    rgba = sphere_rgba()
    Image.fromarray(rgba).save(tmp_path / "a.png")
    mask = np.zeros((40, 40), np.uint8)
    mask[5:15, 5:15] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    photo = read_photo(tmp_path / "a.png", tmp_path / "m.png")
    assert photo.mask_source == "file" and float(photo.mask.sum()) == 100
    Image.fromarray(mask[:30]).save(tmp_path / "small.png")
    with pytest.raises(UserError, match="the mask is 40x30 but the image is 40x40"):
        read_photo(tmp_path / "a.png", tmp_path / "small.png")


def test_mask_by_background_threshold(tmp_path):
    rgba = sphere_rgba()
    rgb = np.where(rgba[..., 3:] > 0, rgba[..., :3], 245).astype(np.uint8)  # an off-white background
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    photo = read_photo(tmp_path / "rgb.jpg")
    assert photo.mask_source == "threshold"
    truth = torch.from_numpy(rgba[..., 3] > 0)
    assert (photo.mask.bool() == truth).float().mean() > 0.97


def test_no_foreground_and_unreadable_images_are_refused(tmp_path):
    Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).save(tmp_path / "white.png")
    with pytest.raises(UserError, match="white.png: no foreground found"):
        read_photo(tmp_path / "white.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="junk.png: not a readable image"):
        read_photo(tmp_path / "junk.png")


def test_target_pads_to_a_square_and_keeps_the_field_of_view():
    rgb = torch.rand(30, 60, 3)
    target = make_target(Photo(rgb, torch.ones(30, 60), "alpha"), 20, 40.0, torch.ones(3))
    assert target.rgb.shape == (20, 20, 3)
    assert abs(2 * math.degrees(math.atan(10 / target.focal)) - 40.0) < 1e-4  # width 60 -> 20 px, fov kept
    assert target.mask[0].sum() == 0 and target.mask[10].sum() > 19  # padding above and below
    assert torch.allclose(target.rgb[0], torch.ones(20, 3))  # padding is background


def test_object_frame_cuts_a_square_around_the_object_even_past_the_edge():
    mask = torch.zeros(40, 80)
    mask[5:15, 60:70] = 1.0  # a 10 px object, off-centre
    assert object_window(mask, 0.5) == (0, 55, 20)
    rgb = torch.zeros(40, 80, 3)
    rgb[..., 0] = 1.0
    target = make_target(Photo(rgb, mask, "alpha"), 20, 40.0, torch.ones(3), object_window(mask, 0.5), "window")
    rows, cols = torch.nonzero(target.mask > 0.5, as_tuple=True)
    assert (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())) == (5, 14, 5, 14)  # centred, half the side
    assert abs(2 * math.degrees(math.atan(10 / target.focal)) - 40.0) < 1e-4  # the square's own field of view
    mask = torch.zeros(40, 80)
    mask[30:40, 74:80] = 1.0  # cut by the photo's corner: the square reaches past it
    top, left, side = object_window(mask, 0.5)
    assert (top, left, side) == (25, 67, 20) and top + side > 40 and left + side > 80
    target = make_target(Photo(rgb, mask, "alpha"), 20, 40.0, torch.ones(3), (top, left, side), "window")
    assert float(target.mask.sum()) == 60  # all 10 x 6 px of it (the square is 20 px, as the target)
    assert torch.allclose(target.rgb[-1, -1], torch.ones(3))  # past the photo's edge: background


# ----------------------------------------------------------------------------- cameras and schedule


def test_orbit_pose_and_rays_match_the_collections_cameras():
    pose = orbit_vector(33.0, 21.0, 2.2)
    assert np.allclose(orbit_c2w(pose).numpy(), orbit_pose(2.2, 33.0, 21.0)[:3], atol=1e-6)
    camera = orbit_camera(12, 33.0, 21.0)
    bundle = camera.generate_rays(camera_indices=0, keep_shape=True)
    origins, directions = camera_rays(orbit_c2w(pose), float(camera.fx), 12, pixel_grid(12))
    assert torch.allclose(directions, bundle.directions.reshape(-1, 3), atol=1e-5)
    assert torch.allclose(origins, bundle.origins.reshape(-1, 3), atol=1e-5)
    assert rotation_error_deg(orbit_c2w(pose), orbit_c2w(orbit_vector(43.0, 21.0, 2.2))) == pytest.approx(10.0, abs=0.01)


def test_alternating_schedule_and_noise_decay():
    assert [active_groups(s, "alternating", 2) for s in range(7)] == [
        ("pose",), ("pose",), ("shape",), ("shape",), ("appearance",), ("appearance",), ("pose",)]
    assert active_groups(5, "joint", 2) == ("pose", "shape", "appearance")
    assert noise_scale(0, 100, 1.0, 0.5) == 1.0
    assert noise_scale(25, 100, 1.0, 0.5) == 0.5
    assert noise_scale(60, 100, 1.0, 0.5) == 0.0


# ----------------------------------------------------------------------------- the trained markers


@pytest.fixture(scope="module")
def markers(trained_run):
    config, pipeline = load_run(trained_run / "config.yml")
    model = pipeline.model
    model.requires_grad_(False)
    return config, model


def render_photo(model, index: int, azimuth: float, elevation: float, resolution: int = 24) -> Photo:
    """A render of a training object as an RGBA photo (straight alpha)."""
    out = model.render_view(orbit_camera(resolution, azimuth, elevation), model.object_codes(torch.tensor(index)))
    alpha = out["accumulation"].clamp(1e-4, 1.0)
    return Photo(((out["rgb"] - (1.0 - alpha)) / alpha).clamp(0, 1), out["accumulation"][..., 0], "alpha")


def invert(markers, photo, **overrides):
    config, model = markers
    settings = InversionConfig(**{**QUICK, **overrides})
    inversion = start_inversion(model, photo, settings)
    return run_inversion(inversion, progress=False)


def project(c2w: torch.Tensor, point, focal: float, resolution: int) -> torch.Tensor:
    """Pixel (col, row) where a world point appears in a camera of `orbit_c2w`'s form."""
    local = c2w[:, :3].T @ (torch.as_tensor(point, dtype=torch.float32) - c2w[:, 3])
    return resolution / 2 + focal * torch.stack([local[0] / -local[2], -local[1] / -local[2]])


def test_round_trip_recovers_the_marker_and_its_view(markers):
    """A sphere looks the same from every side, so an image fixes only where (and how big) it
    appears: the recovered camera must show the true object exactly as the true camera does, with
    the sphere's centre on the same pixel."""

    _, model = markers
    truth = orbit_vector(70.0, 35.0, 2.2)
    inversion = invert(markers, render_photo(model, 1, 70.0, 35.0))
    assert inversion.psnr() > 30.0
    found = inversion.pose(detach=True)
    focal = inversion.target.focal
    assert torch.dist(project(orbit_c2w(found), MARKER_CENTER, focal, 24), project(orbit_c2w(truth), MARKER_CENTER, focal, 24)) < 1.0
    green = model.object_codes(torch.tensor(1))
    seen_from_found = model.render_view(orbit_camera(24, *_angles(found)), green)["rgb"]
    seen_from_truth = model.render_view(orbit_camera(24, 70.0, 35.0), green)["rgb"]
    assert -10 * torch.log10(torch.mean((seen_from_found - seen_from_truth) ** 2)) > 30.0
    # The green marker, not the red one: the appearance code moved towards marker_1's.
    codes, red = inversion.result_codes(), model.object_codes(torch.tensor(0))
    assert torch.dist(codes.z_a, green.z_a) < torch.dist(codes.z_a, red.z_a)


def _angles(pose: torch.Tensor) -> tuple[float, float]:
    return math.degrees(float(pose[0])), math.degrees(float(pose[1]))


def test_same_seed_same_codes_other_seed_other_codes(markers):
    _, model = markers
    photo = render_photo(model, 0, 200.0, 20.0)
    first, again, other = (invert(markers, photo, steps=12, seed=seed).result_codes() for seed in (3, 3, 4))
    assert torch.equal(first.z_s, again.z_s) and torch.equal(first.z_a, again.z_a)
    assert not torch.equal(first.z_s, other.z_s)


def test_an_inversions_renders_show_a_part_edit_of_its_codes(markers):
    """Edits of an inverted photo are seen as the photo frames them (`Inversion.render`), part edits
    too: a change given to every part is the plain appearance change (part weights sum to one)."""
    from clipnerf_ns.models.part_head import PartHead

    _, model = markers
    inversion = invert(markers, render_photo(model, 0, 200.0, 20.0), steps=4)
    codes, change = inversion.result_codes(), torch.full((model.config.field.appearance_dim,), 3.0)
    model.attach_part_head(PartHead(("one", "other"), model.config.field.shape_dim))
    try:
        part_edit = inversion.render(codes=Codes(codes.z_s, codes.z_a, change.expand(2, -1)))["rgb"]
        plain_edit = inversion.render(codes=Codes(codes.z_s, codes.z_a + change))["rgb"]
    finally:
        object.__setattr__(model, "part_head", None)
    assert torch.allclose(part_edit, plain_edit, atol=1e-4)
    assert (part_edit - inversion.render(codes=codes)["rgb"]).abs().amax() > 0.1


def test_the_trainer_pipeline_takes_the_same_steps(markers, trained_run, tmp_path):
    """ns-train clip-nerf-invert (nerfstudio's own trainer, in this process) writes the codes
    `run_inversion` finds with the same settings."""
    from clipnerf_ns.app.methods import clip_nerf_invert

    _, model = markers
    image = tmp_path / "photo.png"
    photo = render_photo(model, 1, 120.0, 30.0)
    rgba = torch.cat([photo.rgb, photo.mask[..., None]], -1)
    Image.fromarray((rgba.numpy() * 255 + 0.5).astype(np.uint8)).save(image)
    settings = dict(QUICK, steps=9, search_steps=4)
    photo = read_photo(image)  # what both read

    config = copy.deepcopy(clip_nerf_invert.config)
    config.pipeline.stage1, config.pipeline.image = trained_run / "config.yml", image
    config.pipeline.inversion = InversionConfig(**settings)
    config.output_dir, config.experiment_name, config.timestamp = tmp_path / "out", "e", "t"
    config.max_num_iterations, config.vis, config.machine.device_type = settings["steps"], "tensorboard", "cpu"
    config.logging.local_writer.enable = False
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    tensors, metadata = read_codes_file(config.get_base_dir() / "codes.safetensors")

    direct = invert(markers, photo, **settings).result_codes()
    assert torch.allclose(tensors["z_s"], direct.z_s, atol=1e-6) and torch.allclose(tensors["z_a"], direct.z_a, atol=1e-6)
    assert metadata["model"] == model_fingerprint(model.field)
    assert sorted(config.get_checkpoint_dir().glob("step-*.ckpt"))


# ----------------------------------------------------------------------------- the command line


def cli(argv: list[str], capsys) -> tuple[int, str]:
    """`clipnerf ARGV` in this process (the console script's own entry point): exit code, last stderr line."""
    code, err = clipnerf_in_process(capsys, *argv)
    lines = err.strip().splitlines()
    return code, lines[-1] if lines else ""


def test_cli_writes_codes_pose_comparison_and_a_render_config(markers, trained_run, tmp_path, capsys):
    """`clipnerf invert` in this process (a subprocess spends its time importing nerfstudio and
    CLIP; the bad-input test runs the console script itself)."""
    _, model = markers
    photo = render_photo(model, 0, 300.0, 25.0, resolution=40)
    rgba = torch.cat([photo.rgb, photo.mask[..., None]], -1)
    Image.fromarray((rgba.numpy() * 255 + 0.5).astype(np.uint8)).save(tmp_path / "photo.png")
    out = tmp_path / "inverted"
    args = ["invert", "--load-config", str(trained_run / "config.yml"), "--image", str(tmp_path / "photo.png"),
            "--output-dir", str(out), "--steps", "15", "--resolution", "24", "--search-steps", "4", "--seed", "1"]
    assert cli(args, capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["codes.safetensors", "comparison.png", "config.yml", "pose.json"]
    sizes = model.config.field
    codes, info = load_codes(out / "codes.safetensors", model_fingerprint(model.field), sizes.shape_dim, sizes.appearance_dim)
    assert info["source"] == "inversion" and info["steps"] == 15
    tensors, _ = read_codes_file(out / "codes.safetensors")
    assert tensors["camera_to_world"].shape == (4, 4)
    pose = json.loads((out / "pose.json").read_text())
    assert set(pose) >= {"azimuth_deg", "elevation_deg", "distance", "camera_to_world", "psnr"}
    assert Image.open(out / "comparison.png").size == (3 * 24, 24)
    # The render config shows these codes (ns-render / ns-viewer load it).
    from clipnerf_ns.pipelines.runs import read_run_config

    assert read_run_config(out / "config.yml").pipeline.model.render_codes == (out / "codes.safetensors").resolve()
    # Results are not replaced silently, and a refused run leaves them as they were.
    before = (out / "codes.safetensors").read_bytes()
    code, message = cli(args, capsys)
    assert code == 2 and message.startswith(f"clipnerf: error: {out}: output folder exists and is not empty (pass --overwrite")
    assert (out / "codes.safetensors").read_bytes() == before


def test_cli_bad_input_is_one_line_and_writes_nothing(trained_run, tmp_path, capsys):
    """Through the real command line: `run` for one case, `entrypoint` in this process for the others
    (each subprocess spends seconds importing nerfstudio and CLIP)."""
    Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).save(tmp_path / "white.png")
    Image.fromarray(sphere_rgba()).save(tmp_path / "sphere.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "mask8.png")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG broken")
    broken_run = tmp_path / "run"
    broken_run.mkdir()
    config = yaml.load((trained_run / "config.yml").read_text(), Loader=yaml.Loader)
    config.output_dir = tmp_path / "elsewhere"  # the checkpoints are not where the config says
    (broken_run / "config.yml").write_text(yaml.dump(config))
    good, broken = ["--load-config", str(trained_run / "config.yml")], ["--load-config", str(broken_run / "config.yml")]
    base = ["invert", "--output-dir", str(tmp_path / "out")]

    result = run("clipnerf", *base, *good, "--image", str(tmp_path / "white.png"), check=False)
    assert_user_error(result, "white.png: no foreground found")
    cases = [
        (good + ["--image", str(tmp_path / "junk.png")], "junk.png: not a readable image"),
        (good + ["--image", str(tmp_path / "sphere.png"), "--mask", str(tmp_path / "mask8.png")],
         "the mask is 8x8 but the image is 40x40"),
        (broken + ["--image", str(tmp_path / "sphere.png")], "no checkpoint in"),
        (good + ["--image", str(tmp_path / "sphere.png"), "--steps", "0"], "--steps must be between 1 and 10000"),
    ]
    for extra, message in cases:
        code, last = cli(base + extra, capsys)
        assert code == 2 and last.startswith("clipnerf: error:") and message in last, last
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))
