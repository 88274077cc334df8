"""The inversion encoder: its azimuth distribution and modes, `clipnerf train-encoder` on the
trained markers, `clipnerf invert` starting from it, and the shipped chairs model's encoder
recovering training chairs' views and codes in a few seconds."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipnerf_ns.codes import load_codes, model_fingerprint, psnr
from clipnerf_ns.data.cameras import Orbit, orbit_camera
from clipnerf_ns.data.photos import Photo
from clipnerf_ns.editing.inversion_encoder import (
    FORMAT_TAG,
    EncoderNet,
    azimuth_peaks,
    load_encoder,
    predict,
    predicted_pose,
    random_cameras,
    run_encoder,
    soft_azimuth_labels,
)
from clipnerf_ns.editing.invert import InversionConfig, run_inversion, start_inversion
from clipnerf_ns.editing.invert_config import ENCODER_FILE, EncoderTraining
from clipnerf_ns.errors import UserError
from clipnerf_ns.pipelines.runs import load_run, nerf_of
from tests.helpers import clipnerf_in_process


def test_soft_labels_wrap_around_and_sum_to_one():
    labels = soft_azimuth_labels(torch.tensor([0.0, 359.0, 185.0]), 36)
    assert torch.allclose(labels.sum(1), torch.ones(3))
    assert labels[0].argmax() == 0 and labels[1].argmax() == 0 and labels[2].argmax() == 18
    assert labels[0, 1] == pytest.approx(float(labels[0, 35]), rel=1e-5)  # symmetric about 0 deg


def test_modes_of_a_two_peaked_azimuth_distribution():
    """A symmetric object's renders: peaks at 90 and 270 degrees, the larger first; the circular
    mean of a mode's three bins lands between bins; modes closer than the gap are one."""
    p = torch.full((36,), 1e-3)
    p[9], p[10] = 0.3, 0.1  # 90 and 100 degrees: a mode at about 92.5
    p[27] = 0.25
    peaks = azimuth_peaks(p / p.sum(), 4, 45.0)
    assert [round(a) for a, _ in peaks[:2]] == [92, 270]
    assert peaks[0][1] > peaks[1][1]
    assert all(min(abs(a - b), 360 - abs(a - b)) >= 45 for i, (a, _) in enumerate(peaks) for b, _ in peaks[:i])


def test_free_cameras_and_their_targets_give_back_the_same_pose():
    """The training cameras off the sphere, and the pose `predicted_pose` makes of a perfect guess
    of their targets, are the same camera; sphere and orbit modes keep what they do not free."""
    config = EncoderTraining(load_config=Path("RUN/config.yml"))
    poses, extras = random_cameras(64, np.random.default_rng(0), config, 2.2)
    assert extras[:, 1:].min() >= -1 and extras[:, 1:].max() <= 1 and np.ptp(poses[:, 2]) > 0.4
    for pose, extra in zip(poses, extras):
        guess = predicted_pose(math.degrees(pose[0]), math.degrees(pose[1]), 2.2, torch.from_numpy(extra), "free")
        assert torch.allclose(guess, torch.from_numpy(pose).float(), atol=1e-5)
    sphere = predicted_pose(30.0, 20.0, 2.2, torch.ones(5), "sphere")
    orbit = predicted_pose(30.0, 20.0, 2.2, torch.ones(5), "orbit")
    assert sphere[2] == pytest.approx(2.2) and torch.equal(sphere[3:], torch.zeros(4))
    assert orbit[2] == pytest.approx(2.2 * math.exp(0.15)) and torch.equal(orbit[3:], torch.zeros(4))
    flat, _ = random_cameras(8, np.random.default_rng(0), EncoderTraining(load_config=Path("x"), camera="sphere"), 2.2)
    assert np.allclose(flat[:, 2], 2.2) and np.allclose(flat[:, 3:], 0.0)


def _photo(model, codes, azimuth, elevation, resolution):
    out = model.render_view(orbit_camera(resolution, azimuth, elevation), codes)
    alpha = out["accumulation"].clamp(1e-4, 1.0)
    return Photo(((out["rgb"] - (1.0 - alpha)) / alpha).clamp(0, 1), out["accumulation"][..., 0], "alpha")


def test_train_encoder_then_invert_from_it(trained_run, tmp_path, capsys):
    """Through the command line, in this process: the encoder is written beside the run's
    config.yml (a copy here, so that other tests keep the search start), and `clipnerf invert`
    starts from it on its own."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained_run / "config.yml", run / "config.yml")  # its checkpoints stay where the config says
    args = ["train-encoder", "--load-config", str(run / "config.yml"), "--renders", "192", "--views-per-code", "8",
            "--resolution", "16", "--samples", "12", "--steps", "40", "--batch-size", "32"]
    assert clipnerf_in_process(capsys, *args)[0] == 0
    assert (run / ENCODER_FILE).is_file()
    code, message = clipnerf_in_process(capsys, *args)
    assert code == 2 and "exists; pass --overwrite" in message

    _, pipeline = load_run(run / "config.yml")
    model = nerf_of(pipeline)
    model.requires_grad_(False)
    photo = _photo(model, model.object_codes(torch.tensor(1)), 120.0, 30.0, 24)
    rgba = torch.cat([photo.rgb, photo.mask[..., None]], -1)
    Image.fromarray((rgba.numpy() * 255 + 0.5).astype(np.uint8)).save(tmp_path / "photo.png")
    out = tmp_path / "inverted"
    invert = ["invert", "--load-config", str(run / "config.yml"), "--image", str(tmp_path / "photo.png"),
              "--output-dir", str(out), "--encoder-steps", "20", "--resolution", "24", "--search-steps", "4"]
    assert clipnerf_in_process(capsys, *invert)[0] == 0
    sizes = model.config.field
    _, info = load_codes(out / "codes.safetensors", model_fingerprint(model.field), sizes.shape_dim, sizes.appearance_dim)
    assert info["start"] == "encoder" and info["steps"] == 20 and info["psnr"] > 25.0
    # Asking for the search, or for an encoder a run does not have.
    assert clipnerf_in_process(capsys, *invert, "--start", "search", "--steps", "5", "--overwrite")[0] == 0
    _, info = load_codes(out / "codes.safetensors", model_fingerprint(model.field), sizes.shape_dim, sizes.appearance_dim)
    assert info["start"] == "search" and info["steps"] == 5
    code, message = clipnerf_in_process(capsys, "invert", "--load-config", str(trained_run / "config.yml"), "--image",
                                         str(tmp_path / "photo.png"), "--output-dir", str(tmp_path / "o"), "--start", "encoder")
    assert code == 2 and "--start encoder" in message and "clipnerf train-encoder" in message
    with pytest.raises(UserError, match="trained for another field"):
        load_encoder(run / ENCODER_FILE, "0" * 16)


@pytest.fixture(scope="module")
def shipped(pretrained_runs):
    _, pipeline = load_run(pretrained_runs.stage1)
    model = nerf_of(pipeline)
    model.requires_grad_(False)
    encoder = run_encoder(pretrained_runs.stage1, model_fingerprint(model.field), "encoder")
    return model, encoder


def test_the_shipped_encoder_guesses_the_camera_of_training_chairs(shipped):
    """Renders of training chairs from random views of the training band: the true azimuth is
    among the encoder's three likeliest modes for most of them (stools and swivel chairs have
    several right answers), and its elevation is close."""
    model, encoder = shipped
    rng = np.random.default_rng(5)
    hits, elevation_errors = 0, []
    for _ in range(12):
        index, azimuth, elevation = int(rng.integers(model.num_objects)), float(rng.uniform(0, 360)), float(rng.uniform(10, 60))
        photo = _photo(model, model.object_codes(torch.tensor(index)).detach(), azimuth, elevation, 32)
        guess = predict(encoder, photo.rgb * photo.mask[..., None] + (1 - photo.mask[..., None]), photo.mask)
        modes = [a for a, _ in azimuth_peaks(guess["azimuth"], 3, 45.0)]
        hits += min(min(abs(a - azimuth) % 360, 360 - abs(a - azimuth) % 360) for a in modes) <= 20.0
        elevation_errors.append(abs(float(guess["elevation"]) - elevation))
    assert hits >= 10, hits
    assert np.median(elevation_errors) < 8.0, elevation_errors


def test_the_shipped_encoder_start_inverts_training_chairs(shipped):
    """From the encoder's start and its few steps: the render matches the input, and the true
    chair seen from the recovered camera looks as in the input (right up to symmetry)."""
    model, encoder = shipped
    for index, azimuth, elevation in ((3, 40.0, 30.0), (17, 230.0, 15.0)):
        truth = model.object_codes(torch.tensor(index)).detach()
        photo = _photo(model, truth, azimuth, elevation, 64)
        inversion = start_inversion(model, photo, InversionConfig(), encoder=encoder)
        run_inversion(inversion, progress=False)
        assert inversion.start == "encoder" and inversion.planned_steps == InversionConfig().encoder_steps
        assert inversion.psnr() > 30.0, (index, inversion.psnr())
        found = inversion.pose(detach=True)
        seen = model.render_view(orbit_camera(64, math.degrees(float(found[0])), math.degrees(float(found[1]))), truth)["rgb"]
        shown = model.render_view(orbit_camera(64, azimuth, elevation), truth)["rgb"]
        assert float(psnr(seen, shown)) > 28.0


def test_the_shipped_encoder_guesses_the_distance_of_a_photo_off_the_orbit(shipped):
    """A chair photographed from 2.0 instead of the collection's 2.2: with `--camera orbit` the
    encoder's start has the distance, and the inversion beats the sphere's fixed 2.2 (on the
    400-chair model of 5 December: 30.8 against 28.3 dB, ending within 0.05 of 2.0; on the tied
    model shipped on 6 December: start 2.10, end 2.13, 31.1 against 29.7 dB; on the 36-chair one
    it was 5 dB). (Beyond the orbit its guesses run short: 2.24 for 2.5, README.)"""
    model, encoder = shipped
    truth = model.object_codes(torch.tensor(5)).detach()
    out = model.render_view(orbit_camera(64, 60.0, 25.0, Orbit(2.0, model.orbit.fov_deg)), truth)
    alpha = out["accumulation"].clamp(1e-4, 1.0)
    photo = Photo(((out["rgb"] - (1.0 - alpha)) / alpha).clamp(0, 1), out["accumulation"][..., 0], "alpha")
    results = {}
    for camera in ("orbit", "sphere"):
        # No extension to the search's steps: the figure is the encoder's start and its own steps.
        inversion = start_inversion(model, photo, InversionConfig(camera=camera, encoder_extend_below=0.0), encoder=encoder)
        start = float(inversion.pose(detach=True)[2])
        run_inversion(inversion, progress=False)
        results[camera] = (start, float(inversion.pose(detach=True)[2]), inversion.psnr())
    start, final, orbit_psnr = results["orbit"]
    assert abs(start - 2.0) < 0.15 and abs(final - 2.0) < 0.15, results
    assert orbit_psnr > results["sphere"][2] + 1.0, results


def test_a_poor_fit_from_the_encoder_goes_on_to_the_search_steps(shipped):
    """A chair the model never saw (the package's unseen chair: about 27 dB) is still far
    off after the encoder start's steps: it goes on to `steps` in all, the progress told of each;
    with the extension off (the viewer) it stops. (Training chairs, above 30 dB, stop: above.)"""
    from clipnerf_ns.app.pretrained import UNSEEN_CHAIR
    from clipnerf_ns.data.photos import read_photo

    model, encoder = shipped
    photo = read_photo(UNSEEN_CHAIR)
    for extend_below, planned in ((30.0, 12), (0.0, 4)):
        seen = []
        config = InversionConfig(steps=12, encoder_steps=4, encoder_extend_below=extend_below)
        inversion = start_inversion(model, photo, config, encoder=encoder)
        run_inversion(inversion, progress=False, on_step=lambda step, psnr_db: seen.append((step, psnr_db)))
        assert inversion.planned_steps == planned and [step for step, _ in seen] == list(range(planned))
        assert seen[3][1] < 30.0, seen


def test_a_photo_like_render_of_the_unseen_chair_inverts_when_framed_on_it(shipped, pretrained_runs):
    """The held-out unseen chair's mesh, from a camera the inversion is not told (about 3 m away,
    aimed off its centre, framed tight and off-centre in a portrait photo, other lights): cut
    around the object (--frame object: distance, roll and aim found), the recovered view is right
    and the render close (measured: 28.8 dB, 1.3 degrees off; padded as a view of the run's camera
    the photos of the bench's procedural chairs invert a good deal worse: README)."""
    from clipnerf_ns.app.collections import synth_object_again
    from clipnerf_ns.app.pretrained import UNSEEN_CHAIR_ID
    from clipnerf_ns.data.photo_like import direction_error_deg, photo_of

    model, encoder = shipped
    document = json.loads((pretrained_runs.data / "collection.json").read_text())
    index = [obj["id"] for obj in document["objects"]].index(UNSEEN_CHAIR_ID)
    shot = photo_of(synth_object_again(document["generator"]["options"], index).mesh, np.random.default_rng(2), 128)
    assert shot.photo.mask.shape != (128, 128)  # portrait or landscape
    inversion = start_inversion(model, shot.photo, InversionConfig(frame="object"), encoder=encoder)
    run_inversion(inversion, progress=False)
    assert inversion.config.camera == "free"
    assert inversion.psnr() > 26.0 and direction_error_deg(shot.direction, inversion.pose(detach=True), 1) < 5.0


def test_encoders_of_another_version_or_damaged_are_one_line_errors(tmp_path):
    from safetensors.torch import save_file

    net = EncoderNet(16, 4, 3, 12)
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={"format": "clipnerf_ns.inversion_encoder.v1", "model": "f"})
    with pytest.raises(UserError, match="train one with clipnerf train-encoder"):
        load_encoder(tmp_path / "old.safetensors", "f")
    sizes = json.dumps({"azimuth": 12, "elevation": 1, "camera": 5, "u_s": 4, "u_a": 3})
    del tensors["head.bias"]
    save_file(tensors, str(tmp_path / "cut.safetensors"), metadata={"format": FORMAT_TAG, "model": "f", "resolution": "16", "sizes": sizes})
    with pytest.raises(UserError, match="damaged inversion encoder"):
        load_encoder(tmp_path / "cut.safetensors", "f")
