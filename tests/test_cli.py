"""The `clipnerf` command line and nerfstudio's, run as a user runs them (real subprocesses)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import assert_user_error, mask_iou, run, write_labelled_chair

SHARED_MESHES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "meshes"
SHARED_PARTNET = SHARED_MESHES.parent / "partnet"
TINY = ["--views", "4", "--eval-views", "2", "--resolution", "32", "--workers", "2"]


def test_synth_is_deterministic_and_readable(tmp_path):
    for name in ("a", "b"):
        run("clipnerf", "synth", "cars", "--num-objects", "3", "--seed", "7", "--out", str(tmp_path / name), *TINY)
    doc_a = json.loads((tmp_path / "a" / "collection.json").read_text())
    doc_b = json.loads((tmp_path / "b" / "collection.json").read_text())
    assert doc_a["objects"] == doc_b["objects"]
    assert [o["id"] for o in doc_a["objects"]] == ["car_0000", "car_0001", "car_0002"]
    for obj in doc_a["objects"]:
        for image in sorted((tmp_path / "a" / obj["path"] / "images").glob("*.png")):
            assert image.read_bytes() == (tmp_path / "b" / obj["path"] / "images" / image.name).read_bytes()
    assert (tmp_path / "a" / "preview.png").exists()
    assert doc_a["generator"]["options"]["plan"]["resolution"] == 32
    # A different seed gives different objects.
    run("clipnerf", "synth", "cars", "--num-objects", "3", "--seed", "8", "--out", str(tmp_path / "c"), *TINY)
    doc_c = json.loads((tmp_path / "c" / "collection.json").read_text())
    assert doc_c["objects"][0]["attributes"] != doc_a["objects"][0]["attributes"]


def test_object_i_does_not_depend_on_the_number_of_objects(tmp_path):
    run("clipnerf", "synth", "chairs", "--num-objects", "2", "--out", str(tmp_path / "two"), *TINY)
    run("clipnerf", "synth", "chairs", "--num-objects", "4", "--heldout-fraction", "0.5",
        "--out", str(tmp_path / "four"), *TINY)
    two = json.loads((tmp_path / "two" / "collection.json").read_text())["objects"]
    four = json.loads((tmp_path / "four" / "collection.json").read_text())["objects"]
    assert [o["attributes"] for o in two] == [o["attributes"] for o in four[:2]]
    assert [o["split"] for o in four] == ["train", "train", "test", "test"]


@pytest.mark.skipif(not SHARED_MESHES.exists(), reason="shared/data/meshes is not beside the checkout")
def test_render_meshes_on_real_partnet_chairs(tmp_path):
    out = tmp_path / "partnet"
    run("clipnerf", "render-meshes", "--meshes", str(SHARED_MESHES), "--out", str(out), "--category", "chairs", *TINY)
    doc = json.loads((out / "collection.json").read_text())
    assert len(doc["objects"]) == 6 and doc["category"] == "chairs"
    assert all(o["attributes"]["num_parts"] >= 2 for o in doc["objects"])
    for obj in doc["objects"]:
        assert len(list((out / obj["path"] / "images").glob("*.png"))) == 6


def test_real_chairs_join_procedural_ones_in_one_collection(tmp_path):
    write_labelled_chair(tmp_path / "meshes" / "box-chair")
    run("clipnerf", "render-meshes", "--meshes", str(tmp_path / "meshes"), "--category", "chairs",
        "--out", str(tmp_path / "real"), *TINY)
    run("clipnerf", "synth", "chairs", "--num-objects", "2", "--heldout-fraction", "0.5", "--out", str(tmp_path / "syn"), *TINY)
    run("clipnerf", "merge", str(tmp_path / "syn"), str(tmp_path / "real"), "--out", str(tmp_path / "mixed"))
    doc = json.loads((tmp_path / "mixed" / "collection.json").read_text())
    assert doc["category"] == "chairs"
    assert [(o["id"], o["split"]) for o in doc["objects"]] == [("chair_0000", "train"), ("chair_0001", "test"), ("box-chair", "train")]
    real = doc["objects"][2]
    assert real["attributes"]["source_kind"] == "partnet" and real["attributes"]["leg_count"] == 4 and real["captions"]
    assert [m["objects"] for m in doc["generator"]["merged"]] == [2, 1]
    from clipnerf_ns.data.collection import read_collection  # deferred: the CLI is what is under test

    assert len(read_collection(tmp_path / "mixed").objects) == 3
    # A collection merged with itself: the later copies get their folder's name in front.
    run("clipnerf", "merge", str(tmp_path / "syn"), str(tmp_path / "syn"), "--out", str(tmp_path / "twice"))
    ids = [o["id"] for o in json.loads((tmp_path / "twice" / "collection.json").read_text())["objects"]]
    assert ids == ["chair_0000", "chair_0001", "syn-chair_0000", "syn-chair_0001"]


def test_merge_refuses_what_does_not_fit_together(tmp_path):
    run("clipnerf", "synth", "chairs", "--num-objects", "1", "--out", str(tmp_path / "chairs"), *TINY)
    run("clipnerf", "synth", "cars", "--num-objects", "1", "--out", str(tmp_path / "cars"), *TINY)
    run("clipnerf", "synth", "chairs", "--num-objects", "1", "--out", str(tmp_path / "big"), *TINY[:-4], "--resolution", "40")
    merge = ("clipnerf", "merge", str(tmp_path / "chairs"))
    assert_user_error(run(*merge, str(tmp_path / "cars"), "--out", str(tmp_path / "o"), check=False), "--category", alone=True)
    assert_user_error(run(*merge, str(tmp_path / "big"), "--out", str(tmp_path / "o"), check=False), "40x40", "32x32", alone=True)
    assert_user_error(run(*merge, "--out", str(tmp_path / "o"), check=False), "two", alone=True)
    assert not (tmp_path / "o").exists()
    run(*merge, str(tmp_path / "cars"), "--category", "vehicles-and-seats", "--out", str(tmp_path / "o"))


@pytest.mark.skipif(not SHARED_PARTNET.exists(), reason="shared/data/partnet is not beside the checkout")
def test_render_meshes_reads_partnet_labels(tmp_path):
    out = tmp_path / "real"
    run("clipnerf", "render-meshes", "--meshes", str(SHARED_PARTNET), "--out", str(out), "--category", "chairs",
        "--heldout-fraction", "0.2", *TINY, timeout=600)
    objects = json.loads((out / "collection.json").read_text())["objects"]
    assert len(objects) == 31 and sum(o["split"] == "test" for o in objects) == 6
    assert all(o["captions"] and o["attributes"]["seat_color"] and o["attributes"]["kind"] for o in objects)
    kinds = {o["attributes"]["kind"] for o in objects}
    assert kinds == {"dining chair", "armchair", "office chair"}


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "c"
    run("clipnerf", "synth", "chairs", "--num-objects", "1", "--out", str(out), *TINY)
    assert_user_error(run("clipnerf", "synth", "chairs", "--num-objects", "1", "--out", str(out), *TINY, check=False),
                      str(out), "--overwrite", alone=True)
    run("clipnerf", "synth", "cars", "--num-objects", "1", "--out", str(out), "--overwrite", *TINY)
    assert json.loads((out / "collection.json").read_text())["category"] == "cars"


def test_a_mesh_that_fails_to_load_leaves_nothing_behind(tmp_path):
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    (meshes / "cube.obj").write_text(
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\nv 1 0 1\nv 1 1 1\nv 0 1 1\n"
        "f 1 2 3\nf 1 3 4\nf 5 6 7\nf 5 7 8\nf 1 2 6\nf 1 6 5\nf 4 3 7\nf 4 7 8\n"
    )
    (meshes / "broken.ply").write_text("this is not a mesh\n")
    out = tmp_path / "out"
    result = run("clipnerf", "render-meshes", "--meshes", str(meshes), "--out", str(out), *TINY, check=False)
    assert_user_error(result, "broken.ply", alone=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meshes"]  # no output, no partial folder


@pytest.mark.parametrize("args, fragments", [
    (["render-meshes", "--meshes", "/nonexistent/meshes"], ["/nonexistent/meshes"]),
    (["synth", "chairs", "--num-objects", "0"], ["--num-objects", "0"]),
    (["synth", "chairs", "--resolution", "2"], ["--resolution", "2"]),
    (["synth", "chairs", "--heldout-fraction", "1.5"], ["--heldout-fraction", "1.5"]),
    (["synth", "chairs", "--generator-version", "3"], ["--generator-version", "3"]),  # no such generator yet
])
def test_bad_arguments(tmp_path, args, fragments):
    result = run("clipnerf", *args, "--out", str(tmp_path / "out"), check=False)
    assert_user_error(result, *fragments, alone=True)
    assert not (tmp_path / "out").exists()


def test_empty_mesh_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("clipnerf", "render-meshes", "--meshes", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), check=False)
    assert_user_error(result, "empty", "no meshes", alone=True)


def test_nerfstudio_sees_the_dataparser_and_nothing_is_broken():
    result = run("ns-train", "--help")
    assert "Traceback" not in result.stderr
    result = run("ns-train", "vanilla-nerf", "clipnerf-collection", "--help")
    assert "--objects {train,test,all}" in result.stdout
    assert "--srn-eval-every" in result.stdout


def test_help_explains_every_option():
    for command in ("synth", "render-meshes", "demo", "select-object", "interpolate", "turntable"):
        out = run("clipnerf", command, "--help").stdout
        assert "(default" in out or "(required)" in out
        assert "--out" in out


def object_colour(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Mask (away from the white background) and mean colour in [0, 1] of an object picture."""
    image = np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255.0
    mask = np.abs(image - 1.0).max(axis=-1) > 0.15
    return mask, image[mask].mean(axis=0)


@pytest.mark.slow  # 100 s; CI also runs `clipnerf demo` from the installed wheel (.ci/install_check)
def test_demo_as_the_readme_runs_it(tmp_path):
    """`make demo`: the shipped chairs model edits a chair's colour and shape by text and its look
    by exemplar, inverts an unseen chair and recolours it, and ns-render makes a turntable."""
    import imageio_ffmpeg
    import torch

    from clipnerf_ns.eval.metrics import delta_e

    out = tmp_path / "demo"
    result = run("clipnerf", "demo", "--out", str(out), timeout=900)
    for line in ("text edit:", "shape edit:", "exemplar edit:", "inversion:", "recoloured:", "turntable:", "ns-viewer --load-config"):
        assert line in result.stdout
    assert (out / "demo.png").is_file() and (out / "runs" / "chairs" / "clip-nerf-mappers" / "pretrained" / "config.yml").is_file()

    def lab_change(folder: str) -> float:
        mask_before, before = object_colour(out / folder / "before.png")
        mask_after, after = object_colour(out / folder / "after.png")
        assert mask_iou(mask_before, mask_after) > 0.85  # appearance edits
        return float(delta_e(torch.from_numpy(before), torch.from_numpy(after)))

    assert lab_change("edit_text") > 20.0
    _, red = object_colour(out / "edit_text" / "after.png")
    assert red[0] > red[1] + 0.2 and red[0] > red[2] + 0.2  # 'a red chair'
    assert lab_change("edit_exemplar") > 10.0
    # 'an armchair' (shape only): the silhouette changes, the colours stay
    (mask_before, before), (mask_after, after) = (object_colour(out / "edit_shape" / f) for f in ("before.png", "after.png"))
    assert mask_iou(mask_before, mask_after) < 0.9
    assert float(delta_e(torch.from_numpy(before), torch.from_numpy(after))) < 5.0
    assert lab_change("inverted_recoloured") > 20.0
    pose = json.loads((out / "inverted" / "pose.json").read_text())
    assert pose["psnr"] > 18.0
    frames = imageio_ffmpeg.read_frames(str(out / "edited_turntable.mp4"))
    meta = next(frames)
    assert meta["size"] == (128, 128) and sum(1 for _ in frames) == 48


def test_demo_keeps_earlier_output(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "keep.txt").write_text("mine")
    assert_user_error(run("clipnerf", "demo", "--out", str(tmp_path / "demo"), check=False), "exists", "--overwrite",
                      alone=True)
    assert (tmp_path / "demo" / "keep.txt").read_text() == "mine"


def test_a_collection_records_the_command_that_generates_it(tmp_path, monkeypatch):
    """Not the command that called the generator (`clipnerf demo` regenerates the shipped model's
    collection): the recorded command, parsed as clipnerf parses it, is the generator with its options."""
    import shlex
    from dataclasses import asdict

    import trimesh
    import tyro

    from clipnerf_ns.app.collections import RenderMeshes, _jsonable
    from clipnerf_ns.app.pretrained import regenerate_collection
    from clipnerf_ns.cli import Command
    from clipnerf_ns.data.build import ViewPlan

    monkeypatch.setattr(sys, "argv", ["clipnerf", "demo", "--out", str(tmp_path / "demo")])
    options = {"out": "elsewhere", "seed": 3, "heldout_fraction": 0.5, "workers": 0, "overwrite": False,
               "category": "chairs", "num_objects": 2,
               "plan": {"views": 9, "eval_views": 9, "resolution": 16, "fov_deg": 35.0, "camera_distance": 2.5,
                        "eval_elevation_deg": 20.0, "supersample": 1}}
    synth = regenerate_collection({"options": options}, tmp_path / "chairs", views=1, eval_views=1, overwrite=False)
    trimesh.creation.box().export(tmp_path / "box.obj")
    meshes = RenderMeshes(meshes=tmp_path / "box.obj", out=tmp_path / "boxes", category="boxes", up="z", colors="gray",
                          plan=ViewPlan(views=1, eval_views=1, resolution=16, supersample=1), workers=1).main()
    for folder, start in ((synth, f"clipnerf synth chairs --out {synth} "), (meshes, f"clipnerf render-meshes --out {meshes} ")):
        generator = json.loads((folder / "collection.json").read_text())["generator"]
        assert generator["command"].startswith(start), generator["command"]
        parsed = _jsonable(asdict(tyro.cli(Command, args=shlex.split(generator["command"])[1:])))
        # How it was written (worker processes, overwriting) is not what it holds.
        assert {k: v for k, v in parsed.items() if k not in ("workers", "overwrite")} == \
            {k: v for k, v in generator["options"].items() if k not in ("workers", "overwrite")}
    command = json.loads((synth / "collection.json").read_text())["generator"]["command"] + " "
    assert "--num-objects 2 " in command
    assert "--generator-version 1 " in command  # a record from before generator versions: version 1
