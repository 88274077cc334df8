"""Collection format and the clipnerf-collection dataparser: round trips, layouts, projections."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from clipnerf_ns.data.collection import read_collection
from clipnerf_ns.data.dataparser import CollectionDataParserConfig
from clipnerf_ns.errors import UserError
from tests.helpers import MARKER_CENTER


def parse(data, split="train", **options):
    return CollectionDataParserConfig(data=data, **options).setup().get_dataparser_outputs(split)


def project(cameras, point):
    """Pixel (u, v) of a world point in every camera, from the cameras' own intrinsics and pose."""
    c2w = cameras.camera_to_worlds
    rot, trans = c2w[:, :3, :3], c2w[:, :3, 3]
    local = torch.einsum("nji,nj->ni", rot, torch.as_tensor(point, dtype=torch.float32) - trans)
    depth = -local[:, 2]
    u = cameras.fx[:, 0] * local[:, 0] / depth + cameras.cx[:, 0]
    v = -cameras.fy[:, 0] * local[:, 1] / depth + cameras.cy[:, 0]
    return torch.stack([u, v], dim=-1), depth


def alpha_centroid(path):
    alpha = np.asarray(Image.open(path))[..., 3].astype(np.float64)
    rows, cols = np.mgrid[: alpha.shape[0], : alpha.shape[1]]
    return np.array([(cols + 0.5) * alpha, (rows + 0.5) * alpha]).sum(axis=(1, 2)) / alpha.sum()


def test_round_trip_synth_to_cameras_with_object_indices(marker_collection):
    train = parse(marker_collection, "train")
    assert len(train.image_filenames) == 2 * 6  # two training objects, six views each
    assert train.cameras.metadata["object_index"].squeeze(-1).tolist() == [0] * 6 + [1] * 6
    assert train.metadata["object_ids"] == ["marker_0", "marker_1"]
    assert int(train.cameras.width[0]) == 48 and int(train.cameras.height[0]) == 48
    test = parse(marker_collection, "test")
    assert len(test.image_filenames) == 2 * 3
    # Held-out views are different cameras from the training ones.
    assert not any(torch.allclose(a, b) for a in test.cameras.camera_to_worlds for b in train.cameras.camera_to_worlds)
    heldout = parse(marker_collection, "test", objects="test")
    assert heldout.metadata["object_ids"] == ["marker_2"]
    assert len(parse(marker_collection, "train", objects="all").image_filenames) == 18
    assert len(parse(marker_collection, "train", max_objects=1).image_filenames) == 6


def test_object_index_reaches_every_ray(marker_collection):
    cameras = parse(marker_collection, "train").cameras
    rays = cameras.generate_rays(camera_indices=torch.tensor([[7]]), coords=torch.tensor([[10.5, 20.5]]))
    assert rays.metadata["object_index"].item() == 1


def test_images_load_through_nerfstudio_with_background_and_colour(marker_collection):
    from nerfstudio.data.datasets.base_dataset import InputDataset

    white = InputDataset(parse(marker_collection, "train"))
    image = white[0]["image"]
    assert image.shape == (48, 48, 3)
    assert torch.allclose(image[0, 0], torch.ones(3))  # a corner is background: white
    centre = image[24, 24] if image[24, 24].sum() < 2.9 else image[image.sum(-1) < 2.0].mean(0)
    assert centre[0] > centre[1] and centre[0] > centre[2]  # object 0 is the red sphere
    rgba = InputDataset(parse(marker_collection, "train", alpha_color="none"))[0]["image"]
    assert rgba.shape == (48, 48, 4) and rgba[0, 0, 3] == 0


def test_cameras_reproject_a_known_point_onto_its_render(marker_collection):
    """The marker sphere's silhouette centroid is where the cameras project its centre, in every view."""
    outputs = parse(marker_collection, "train", objects="all")
    pixels, depth = project(outputs.cameras, MARKER_CENTER)
    assert torch.all(depth > 0)
    for path, pixel in zip(outputs.image_filenames, pixels):
        # The centroid of a sphere's perspective silhouette is off its projected centre by a
        # small amount that grows away from the image centre; a fraction of a pixel here.
        np.testing.assert_allclose(alpha_centroid(path), pixel.numpy(), atol=0.35)
    # And nerfstudio's rays through those pixels pass through the point.
    rays = outputs.cameras.generate_rays(
        camera_indices=torch.arange(len(pixels))[:, None], coords=pixels.flip(-1)
    )
    to_point = torch.as_tensor(MARKER_CENTER, dtype=torch.float32) - rays.origins
    miss = torch.linalg.norm(torch.cross(to_point, rays.directions, dim=-1), dim=-1)
    assert miss.max() < 1e-4


def write_srn(root, collection_dir):
    """Re-save a collection's training object 0 in the SRN layout (OpenCV poses, intrinsics.txt)."""
    obj = read_collection(collection_dir).objects[0]
    folder = root / "srn" / obj.object_id
    (folder / "rgb").mkdir(parents=True)
    (folder / "pose").mkdir()
    k = obj.intrinsics[0]
    (folder / "intrinsics.txt").write_text(f"{k.fx} {k.cx} {k.cy} 0.\n0. 0. 0.\n1.\n{k.height} {k.width}\n")
    for i, (path, c2w) in enumerate(zip(obj.image_paths, obj.c2ws)):
        Image.open(path).save(folder / "rgb" / f"{i:06d}.png")
        cv = c2w @ np.diag([1.0, -1.0, -1.0, 1.0])
        (folder / "pose" / f"{i:06d}.txt").write_text(" ".join(f"{x:.10f}" for x in cv.ravel()))
    return root / "srn", obj


def test_srn_layout_gives_the_same_cameras(tmp_path, marker_collection):
    srn, obj = write_srn(tmp_path, marker_collection)
    outputs = parse(srn, "train", srn_eval_every=3)
    test = parse(srn, "test", srn_eval_every=3)
    assert len(outputs.image_filenames) + len(test.image_filenames) == len(obj.image_paths)
    all_c2w = torch.cat([outputs.cameras.camera_to_worlds, test.cameras.camera_to_worlds])
    expected = torch.from_numpy(obj.c2ws[:, :3, :4]).float()
    assert torch.allclose(all_c2w.sort(dim=0).values, expected.sort(dim=0).values, atol=1e-6)
    pixels, _ = project(outputs.cameras, MARKER_CENTER)
    for path, pixel in zip(outputs.image_filenames, pixels):
        np.testing.assert_allclose(alpha_centroid(path), pixel.numpy(), atol=0.35)
    # A folder holding SRN objects, or one SRN object folder itself.
    assert parse(srn / obj.object_id, "train", srn_eval_every=3).metadata["object_ids"] == [obj.object_id]


def test_blender_scene_is_a_one_object_collection(tmp_path, marker_collection):
    obj = read_collection(marker_collection).objects[1]
    fov = 2 * np.arctan(0.5 * obj.intrinsics[0].width / obj.intrinsics[0].fx)
    for split, indices in [("train", obj.view_splits["train"]), ("test", obj.view_splits["test"])]:
        (tmp_path / split).mkdir()
        frames = []
        for i in indices:
            Image.open(obj.image_paths[i]).save(tmp_path / split / f"r_{i}.png")
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": obj.c2ws[i].tolist()})
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": fov, "frames": frames}))
    outputs = parse(tmp_path, "train")
    assert outputs.metadata["object_ids"] == [tmp_path.name]
    assert outputs.cameras.metadata["object_index"].unique().tolist() == [0]
    assert float(outputs.cameras.fx[0]) == pytest.approx(obj.intrinsics[0].fx, rel=1e-6)
    assert float(outputs.scene_box.aabb[1, 0]) == 1.5
    assert len(parse(tmp_path, "val").image_filenames) == 3  # no val file: the test views serve
    assert float(parse(tmp_path, "train", scene_half_size=0.75).scene_box.aabb[0, 2]) == -0.75
    # Image size comes from the first image of a split; any other size is an error.
    Image.open(tmp_path / "test" / f"r_{obj.view_splits['test'][1]}.png").resize((32, 32)).save(
        tmp_path / "test" / f"r_{obj.view_splits['test'][1]}.png"
    )
    expect_error(tmp_path, f"r_{obj.view_splits['test'][1]}.png", "32x32", "48x48")
    expect_error(tmp_path, "--scene-half-size", scene_half_size=-1.0)


def test_blender_scene_with_only_train_views_holds_every_kth_view_out(tmp_path):
    """One's own renders often come as transforms_train.json alone: views are held out as SRN's are."""
    from nerfstudio.data.datasets.base_dataset import InputDataset

    from clipnerf_ns.data.cameras import ring_poses

    poses = ring_poses(10, 3.0)
    (tmp_path / "train").mkdir()
    frames = []
    for i, pose in enumerate(poses):
        image = np.zeros((16, 16, 4), np.uint8)
        image[4:12, 4:12] = (25 * i, 100, 200, 255)  # view i is told by its red value
        Image.fromarray(image, mode="RGBA").save(tmp_path / "train" / f"r_{i}.png")
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": pose.tolist()})
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))

    names = lambda outputs: [p.name for p in outputs.image_filenames]  # noqa: E731
    assert names(parse(tmp_path, "val")) == ["r_0.png", "r_8.png"]  # the default: every 8th
    val = parse(tmp_path, "val", blender_eval_every=3)
    assert names(val) == ["r_0.png", "r_3.png", "r_6.png", "r_9.png"]
    assert names(parse(tmp_path, "test", blender_eval_every=3)) == names(val)
    assert names(parse(tmp_path, "train", blender_eval_every=3)) == [f"r_{i}.png" for i in (1, 2, 4, 5, 7, 8)]
    assert torch.allclose(val.cameras.camera_to_worlds, torch.from_numpy(poses[[0, 3, 6, 9], :3, :4]).float())
    held_out = InputDataset(val)[1]["image"]  # read by nerfstudio, composited on white
    assert held_out.shape == (16, 16, 3) and held_out[8, 8, 0] == pytest.approx(75 / 255, abs=1e-3)
    assert len(parse(tmp_path, "train", blender_eval_every=3, srn_eval_every=2).image_filenames) == 6


# ---- bad input: a one-line error that names the file and the problem ------------------------


def copy_collection(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def expect_error(data, *fragments, **options):
    with pytest.raises(UserError) as info:
        parse(data, "train", **options)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_and_empty_folders(tmp_path):
    expect_error(tmp_path / "nope", "nope", "not found")
    (tmp_path / "empty").mkdir()
    expect_error(tmp_path / "empty", "empty", "not a collection")


def test_malformed_collection_json(tmp_path, marker_collection):
    data = copy_collection(marker_collection, tmp_path / "c")
    (data / "collection.json").write_text('{"format": "clipnerf-collection", "objects": [')
    expect_error(data, "collection.json", "malformed JSON")


def test_inconsistent_image_size(tmp_path, marker_collection):
    data = copy_collection(marker_collection, tmp_path / "c")
    image = data / "marker_1" / "images" / "002.png"
    Image.open(image).resize((40, 48)).save(image)
    expect_error(data, "marker_1/images/002.png", "40x48", "48x48")


def test_unreadable_image(tmp_path, marker_collection):
    data = copy_collection(marker_collection, tmp_path / "c")
    (data / "marker_0" / "images" / "001.png").write_text("not a png")
    expect_error(data, "marker_0/images/001.png", "not a readable image")


def test_pose_that_is_not_rigid(tmp_path, marker_collection):
    data = copy_collection(marker_collection, tmp_path / "c")
    path = data / "marker_0" / "transforms.json"
    doc = json.loads(path.read_text())
    doc["frames"][3]["transform_matrix"][0][0] *= 2.0  # a scale, not a rotation
    path.write_text(json.dumps(doc))
    expect_error(data, "marker_0/transforms.json", "images/003.png", "not a rigid transform")


def test_missing_image_and_bad_split_and_no_objects(tmp_path, marker_collection):
    data = copy_collection(marker_collection, tmp_path / "c")
    (data / "marker_1" / "images" / "000.png").unlink()
    expect_error(data, "marker_1/images/000.png", "no such image file")
    data = copy_collection(marker_collection, tmp_path / "d")
    doc = json.loads((data / "collection.json").read_text())
    doc["objects"][0]["split"] = "validation"
    (data / "collection.json").write_text(json.dumps(doc))
    expect_error(data, "collection.json", "'validation'")
    expect_error(marker_collection, "--max-objects", max_objects=0)


def test_srn_bad_intrinsics_and_pose(tmp_path, marker_collection):
    srn, obj = write_srn(tmp_path, marker_collection)
    pose = srn / obj.object_id / "pose" / "000001.txt"
    pose.write_text("1 0 0")
    expect_error(srn, "000001.txt", "16 numbers")
    (srn / obj.object_id / "intrinsics.txt").write_text("focal?\n")
    expect_error(srn, "intrinsics.txt")


def test_nerfstudio_datamanager_batches_carry_object_indices(marker_collection):
    """nerfstudio's own datamanager and pixel sampler: each sampled ray knows its object."""
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig

    config = VanillaDataManagerConfig(
        dataparser=CollectionDataParserConfig(data=marker_collection), train_num_rays_per_batch=256
    )
    manager = config.setup(device="cpu", test_mode="val", world_size=1, local_rank=0)
    ray_bundle, batch = manager.next_train(0)
    camera = batch["indices"][:, 0]
    object_index = ray_bundle.metadata["object_index"].squeeze(-1)
    assert len(object_index) == 256 and set(object_index.tolist()) == {0, 1}
    assert torch.equal(object_index, camera // 6)  # six training views per object, in order
    assert batch["image"].shape == (256, 3)
    _, eval_batch = manager.next_eval(0)
    assert eval_batch["image"].shape[-1] == 3
