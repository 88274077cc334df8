"""ns-train / ns-eval / ns-render on our methods through the real CLIs, on a tiny collection."""

import json
import shutil
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from clipnerf_ns.data.cameras import orbit_camera
from clipnerf_ns.pipelines.runs import load_run
from tests.helpers import assert_user_error, clipnerf_in_process, one_line, run, run_dir, train

METHODS = sorted(e.name for e in entry_points(group="nerfstudio.method_configs") if e.value.startswith("clipnerf_ns"))
@pytest.mark.parametrize("method", METHODS)
def test_every_registered_method_trains_and_saves(method, marker_collection, tmp_path, request):
    """A few steps through the real CLI, with nerfstudio's evaluation steps (a batch, an image, all
    images) in between, as a long run has them. Later stages start from a trained stage-1 run."""
    extra = ["--steps-per-eval-batch", "2", "--steps-per-eval-image", "2", "--steps-per-eval-all-images", "2"]
    if method == "clip-nerf-mappers":
        stage1 = request.getfixturevalue("trained_run") / "config.yml"
        extra += ["--pipeline.stage1", str(stage1), "--pipeline.model.prompts", str(request.getfixturevalue("marker_prompts")),
                  "--pipeline.model.views-per-step", "1", "--pipeline.model.loss.resolution", "16"]
    if method == "clip-nerf-invert":
        stage1 = request.getfixturevalue("trained_run") / "config.yml"
        extra += ["--pipeline.stage1", str(stage1), "--pipeline.image", str(marker_collection / "marker_0" / "images" / "000.png"),
                  "--pipeline.inversion.resolution", "16", "--pipeline.inversion.search-steps", "2"]
    train(marker_collection, tmp_path, method=method, steps=3, extra=extra)
    checkpoints = sorted((run_dir(tmp_path, method) / "nerfstudio_models").glob("step-*.ckpt"))
    assert checkpoints
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)
    prefix = "_model.nerf." if method == "clip-nerf-mappers" else "_model."
    assert state["pipeline"][prefix + "shape_codes.weight"].shape[0] == 2  # the two training markers


def train_marker_mappers(trained_run, marker_prompts, tmp_path, steps: int, *options: str):
    """The model of a mapper run on the two-marker run, trained `steps` steps with `options`, reloaded."""
    train(None, tmp_path, method="clip-nerf-mappers", steps=steps, extra=[
        "--pipeline.stage1", str(trained_run / "config.yml"), "--pipeline.model.prompts", str(marker_prompts),
        "--pipeline.model.views-per-step", "1", "--pipeline.model.loss.resolution", "16", *options,
    ])
    return load_run(run_dir(tmp_path, "clip-nerf-mappers") / "config.yml")[1].model


@pytest.mark.slow  # 31 s; keeps make test within 15 min (tests/editing/test_mappers.py checks the bound and the code input)
def test_bounded_code_seeing_mappers_train_and_edit_within_the_bound(trained_run, marker_prompts, tmp_path):
    """`--pipeline.model.shape-mapper-sees-code` and `--pipeline.model.max-prior-distance` reach the
    trained run: its shape mapper reads the code, and its shape edits stay within the bound."""
    from clipnerf_ns.editing.edit import Edit, editor_for
    from clipnerf_ns.editing.mappers import prior_distance

    model = train_marker_mappers(trained_run, marker_prompts, tmp_path, 3, "--pipeline.model.shape-mapper-sees-code", "True",
                                 "--pipeline.model.max-prior-distance", "0.5")
    assert model.mappers.shape.hidden.in_features == model.clip.embed_dim + model.nerf.config.field.shape_dim
    torch.nn.init.normal_(model.mappers.shape.out.weight, std=10.0)  # an edit that would go far
    mean, std = model.nerf.code_prior()
    codes = model.nerf.object_codes(torch.tensor(0)).detach()
    edited = editor_for(model).apply(Edit(prompt="a red ball", target="shape"), codes)
    bound = max(0.5, float(prior_distance(codes.z_s, mean.z_s, std.z_s)))
    assert float(prior_distance(edited.z_s, mean.z_s, std.z_s)) <= bound + 1e-4
    assert not torch.equal(edited.z_s, codes.z_s)

    bad = train(None, tmp_path / "bad", method="clip-nerf-mappers", steps=2, check=False, extra=[
        "--pipeline.stage1", str(trained_run / "config.yml"), "--pipeline.model.max-prior-distance", "0",
    ])
    assert_user_error(bad, "--max-prior-distance must be between 0.01 and 100, got 0")
    assert not (run_dir(tmp_path / "bad", "clip-nerf-mappers") / "nerfstudio_models").exists()


@pytest.mark.parametrize("views", ["training", "rendered"])
def test_read_shape_mapper_is_fitted_saved_and_edits(trained_run, marker_prompts, tmp_path, views):
    """`--pipeline.model.shape-mapper read`: fitted from the mapper objects' views (training views
    or renders of their codes) when training starts, saved with the checkpoint, and the reloaded
    run edits shape with it (`--pipeline.model.read-clamp True` on the training-view run, and
    `--pipeline.model.read-holders` on the other, reach the saved mapper; what they do is tested in
    tests/editing/test_read_mapper.py)."""
    from clipnerf_ns.editing.edit import Edit, editor_for

    options = (["--pipeline.model.read-clamp", "True"] if views == "training" else
               ["--pipeline.model.read-holders", "0.5", "--pipeline.model.read-shared", "0.2"])
    model = train_marker_mappers(trained_run, marker_prompts, tmp_path, 2, "--pipeline.model.shape-mapper", "read",
                                 "--pipeline.model.read-percentile", "100", "--pipeline.model.read-views", views, *options)
    assert model.mappers.shape_is_read and model.mappers.shape.code_to_clip.abs().sum() > 0
    # the options reach the reloaded run's mapper
    expected = (True, None, 0.1) if views == "training" else (False, 0.5, 0.2)
    assert (model.mappers.shape.clamp, model.mappers.shape.holders, model.mappers.shape.shared) == expected
    mean, std = model.nerf.code_prior()
    learnt = model.nerf.object_codes(torch.arange(2)).z_s
    assert torch.allclose(model.mappers.shape.learnt, (learnt - mean.z_s) / std.z_s, atol=1e-5)
    editor = editor_for(model)
    edited = [editor.apply(Edit(prompt="a red ball", target="shape"), model.nerf.object_codes(torch.tensor(i))).z_s for i in range(2)]
    moved = [float((e - z).abs().max()) > 1e-4 for e, z in zip(edited, learnt)]  # rounding may move the top one by 1e-7
    assert sum(moved) == 1  # to the top object's score: the other object moves, the top one stays


def test_read_shape_mapper_refuses_what_it_cannot_do(trained_run, marker_prompts, tmp_path):
    bad = train(None, tmp_path / "bad", method="clip-nerf-mappers", steps=2, check=False, extra=[
        "--pipeline.stage1", str(trained_run / "config.yml"), "--pipeline.model.shape-mapper", "read",
        "--pipeline.model.train-mappers", "shape",
    ])
    assert_user_error(bad, "the read shape mapper is not trained")
    one = train(None, tmp_path / "one", method="clip-nerf-mappers", steps=2, check=False, extra=[
        "--pipeline.stage1", str(trained_run / "config.yml"), "--pipeline.model.prompts", str(marker_prompts),
        "--pipeline.model.shape-mapper", "read", "--pipeline.model.heldout-objects", "0.5",  # one mapper object of two
    ])
    assert_user_error(one, "the read shape mapper needs at least 2 mapper objects")


def test_methods_are_registered():
    assert {"clip-nerf", "clip-nerf-small", "clip-nerf-mappers", "clip-nerf-invert"} <= set(METHODS)


def test_adversarial_option_trains(marker_collection, tmp_path):
    result = train(marker_collection, tmp_path, steps=3, extra=[
        "--steps-per-eval-batch", "2", "--pipeline.model.adversarial", "True", "--pipeline.model.patch-size", "4",
        "--pipeline.model.fake-patches", "2",
    ])
    state = torch.load(sorted((run_dir(tmp_path) / "nerfstudio_models").glob("*.ckpt"))[-1], weights_only=True)
    assert "discriminator" in state["optimizers"]
    assert any(k.startswith("_model.discriminator.") for k in state["pipeline"]), result.stdout[-2000:]


def test_eval_reports_psnr_and_ssim_per_object(trained_run, tmp_path):
    out = tmp_path / "eval.json"
    run("ns-eval", "--load-config", str(trained_run / "config.yml"), "--output-path", str(out))
    results = json.loads(out.read_text())["results"]
    assert set(results) >= {"psnr", "ssim", "psnr/marker_0", "psnr/marker_1", "ssim/marker_0"}
    assert results["num_objects"] == 2
    assert results["psnr"] > 18.0  # spheres on white, after a few hundred steps
    assert abs(results["psnr"] - (results["psnr/marker_0"] + results["psnr/marker_1"]) / 2) < 1e-4


def test_reloaded_checkpoint_renders_bit_for_bit(trained_run):
    _, first = load_run(trained_run / "config.yml")
    camera = orbit_camera(32, 60.0, 30.0)
    image = first.model.render_view(camera, first.model.object_codes(torch.tensor(1)))["rgb"]
    _, second = load_run(trained_run / "config.yml")
    again = second.model.render_view(camera, second.model.object_codes(torch.tensor(1)))["rgb"]
    assert torch.equal(image, again)
    assert torch.equal(first.model.occupancy, second.model.occupancy)
    assert not first.model.occupancy.all()  # the grids were refreshed during training and saved


def mean_object_colour(image_path: Path) -> np.ndarray:
    pixels = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32) / 255
    foreground = pixels[(pixels.min(axis=-1) < 0.8)]
    assert len(foreground) > 10, image_path
    return foreground.mean(axis=0)


@pytest.mark.slow  # five subprocesses; tests/editing/test_edit_cli.py renders an edited object with ns-render in CI
def test_render_a_chosen_object_along_a_camera_path(trained_run, tmp_path):
    """marker_0 is red and marker_1 green: ns-render shows whichever object the config names."""
    path = tmp_path / "orbit.json"
    run("clipnerf", "turntable", "--output", str(path), "--frames", "3", "--resolution", "48")
    colours = {}
    for name in ("marker_0", "marker_1"):
        run("clipnerf", "select-object", "--load-config", str(trained_run / "config.yml"), "--object", name,
            "--output-dir", str(tmp_path / name))
        frames = tmp_path / f"{name}_frames"
        run("ns-render", "camera-path", "--load-config", str(tmp_path / name / "config.yml"),
            "--camera-path-filename", str(path), "--output-format", "images", "--output-path", str(frames))
        images = sorted(frames.glob("*.jpg")) + sorted(frames.glob("*.png"))
        assert len(images) == 3
        colours[name] = mean_object_colour(images[0])
    assert colours["marker_0"][0] > colours["marker_0"][1] + 0.1  # red
    assert colours["marker_1"][1] > colours["marker_1"][0] + 0.1  # green


def test_interpolation_strip(trained_run, tmp_path):
    out = tmp_path / "strip.png"
    run("clipnerf", "interpolate", "--load-config", str(trained_run / "config.yml"), "--objects", "marker_0",
        "marker_1", "--steps", "3", "--resolution", "32", "--output", str(out))
    strip = np.asarray(Image.open(out).convert("RGB"), dtype=np.float32) / 255
    assert strip.shape == (3 * 32, 3 * 32, 3)
    both = [strip[64:96, 32 * i : 32 * (i + 1)] for i in range(3)]
    red_minus_green = [tile[..., 0].mean() - tile[..., 1].mean() for tile in both]
    assert red_minus_green[0] > red_minus_green[1] > red_minus_green[2]  # red to green through an in-between


@pytest.mark.slow  # 27 s; keeps make test within 15 min (test_hostile covers the other refused checkpoints)
def test_checkpoint_of_another_object_count_is_refused(trained_run, marker_collection, tmp_path):
    result = train(marker_collection, tmp_path, steps=2, check=False, extra=[
        "--load-dir", str(trained_run / "nerfstudio_models"), "clipnerf-collection", "--max-objects", "1",
    ])
    assert_user_error(result, "codes for 2 objects but the data has 1")


def test_impossible_sizes_are_refused(marker_collection, tmp_path):
    result = train(marker_collection, tmp_path, steps=2, check=False, extra=["--pipeline.model.field.trunk-width", "0"])
    assert_user_error(result, "trunk_width must be at least 1, got 0")
    assert not (run_dir(tmp_path) / "nerfstudio_models").exists()


def moved_run(trained_run, tmp_path):
    """A copy of the run whose config says its run folder (and so its checkpoints) is elsewhere."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    config = yaml.load((copy / "config.yml").read_text(), Loader=yaml.Loader)
    config.output_dir = tmp_path / "elsewhere"
    (copy / "config.yml").write_text(yaml.dump(config))
    return copy / "config.yml"


def test_missing_checkpoint_is_refused(trained_run, tmp_path, capsys):
    code, err = clipnerf_in_process(capsys, "select-object", "--load-config", moved_run(trained_run, tmp_path),
                                    "--object", "0", "--output-dir", tmp_path / "sel")
    assert code == 2 and "no checkpoint in" in one_line(err)
    assert not (tmp_path / "sel").exists()
    code, err = clipnerf_in_process(capsys, "interpolate", "--load-config", tmp_path / "nope.yml", "--objects", "0", "1")
    assert code == 2 and "nope.yml: no such config file" in one_line(err)


@pytest.mark.slow  # ns-eval's own start-up is most of it
def test_ns_eval_refuses_a_run_without_checkpoint(trained_run, tmp_path):
    result = run("ns-eval", "--load-config", str(moved_run(trained_run, tmp_path)), "--output-path", str(tmp_path / "e.json"), check=False)
    assert result.returncode != 0 and not (tmp_path / "e.json").exists()


def test_unknown_object_is_refused(trained_run, tmp_path, capsys):
    code, err = clipnerf_in_process(capsys, "select-object", "--load-config", trained_run / "config.yml",
                                    "--object", "chair_9", "--output-dir", tmp_path / "sel")
    assert code == 2 and "object 'chair_9' is not in the run" in err.strip().splitlines()[-1]


def test_attribute_tied_codes_train_through_ns_train_and_name_a_missing_attribute(tmp_path):
    """`--pipeline.model.code-attributes` on procedural chairs: the saved run's first shape-code
    dimensions hold the chairs' attributes (armrests +-1, standardised seat width); an attribute no
    chair has is one line naming it."""
    from clipnerf_ns.models.attribute_codes import attribute_code_targets

    data = tmp_path / "chairs"
    run("clipnerf", "synth", "chairs", "--num-objects", "3", "--heldout-fraction", "0", "--out", str(data),
        "--views", "4", "--eval-views", "2", "--resolution", "32", "--workers", "2")
    tied = ["--pipeline.model.code-attributes", "armrests", "seat_width"]
    train(data, tmp_path / "run", steps=3, extra=tied)
    model = load_run(run_dir(tmp_path / "run") / "config.yml")[1].model
    attributes = [o["attributes"] for o in json.loads((data / "collection.json").read_text())["objects"]]
    targets, _, labels = attribute_code_targets(attributes, ["armrests", "seat_width"])
    assert model.code_attribute_labels == labels == ["armrests", "seat_width"]
    assert torch.allclose(model.shape_codes.weight[:, :2], targets, atol=0.05)
    bad = train(data, tmp_path / "bad", steps=2, check=False, extra=["--pipeline.model.code-attributes", "wings"])
    assert_user_error(bad, "no object of the collection has the attribute 'wings'")
