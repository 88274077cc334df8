"""Multi-object posed image collections: the on-disk format, its writer, and readers for it,
for the SRN ShapeNet layout and for a single Blender scene.

Collection layout (written by `clipnerf synth` and `clipnerf render-meshes`)::

    DIR/collection.json          category, scene box, objects (id, folder, split, attributes, captions)
    DIR/<object>/transforms.json nerfstudio-style: fl_x fl_y cx cy w h, frames (file_path,
                                 transform_matrix = 4x4 OpenGL camera-to-world), and the
                                 train_filenames / val_filenames / test_filenames view splits
    DIR/<object>/images/*.png    RGBA

Every reader returns the same `Collection`: a list of `ObjectViews`, each with camera-to-world
matrices in nerfstudio's (OpenGL) convention, per-view intrinsics and named view splits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from clipnerf_ns.data.images import image_size, verify_image
from clipnerf_ns.data.render import Intrinsics
from clipnerf_ns.errors import UserError

FORMAT_NAME = "clipnerf-collection"
FORMAT_VERSION = 1
VIEW_SPLITS = ("train", "val", "test")
OBJECT_SPLITS = ("train", "test")


def cube(half_size: float) -> np.ndarray:
    """(2, 3) scene box: a cube of the given half size around the origin."""
    return np.array([[-half_size] * 3, [half_size] * 3])


# Our objects live in the unit box. SRN and Blender files record no box: SRN ShapeNet objects
# fit the unit sphere, and nerfstudio's Blender parser uses +-1.5.
UNIT_SCENE_BOX = cube(0.5)
SRN_HALF_SIZE, BLENDER_HALF_SIZE = 1.0, 1.5


@dataclass
class ObjectViews:
    """The posed views of one object."""

    object_id: str
    image_paths: list[Path]
    c2ws: np.ndarray  # (N, 4, 4) OpenGL camera-to-world
    intrinsics: list[Intrinsics]  # one per view
    view_splits: dict[str, list[int]]  # "train" / "val" / "test" -> indices into the views
    split: str = "train"  # object split: "train" (in the code table) or "test" (held out)
    attributes: dict = field(default_factory=dict)
    captions: list[str] = field(default_factory=list)


@dataclass
class Collection:
    category: str
    objects: list[ObjectViews]
    scene_box: np.ndarray  # (2, 3) min and max corner
    layout: str  # "collection", "srn" or "blender"


# --------------------------------------------------------------------------------------------
# Writing


def write_object_views(
    folder: Path, images: np.ndarray, c2ws: np.ndarray, intrinsics: Intrinsics, view_splits: dict[str, list[int]]
) -> None:
    """Write one object's RGBA images (N, H, W, 4) uint8 and its transforms.json into `folder`."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = [f"images/{i:03d}.png" for i in range(len(images))]
    for name, image in zip(names, images):
        Image.fromarray(image, mode="RGBA").save(folder / name, compress_level=1)
    transforms = {
        "camera_model": "OPENCV",
        "w": intrinsics.width,
        "h": intrinsics.height,
        "fl_x": intrinsics.fx,
        "fl_y": intrinsics.fy,
        "cx": intrinsics.cx,
        "cy": intrinsics.cy,
        "camera_angle_x": float(2 * np.arctan(0.5 * intrinsics.width / intrinsics.fx)),
        "frames": [
            {"file_path": name, "transform_matrix": np.round(c2w, 8).tolist()} for name, c2w in zip(names, c2ws)
        ],
    }
    for split in VIEW_SPLITS:
        transforms[f"{split}_filenames"] = [names[i] for i in view_splits.get(split, [])]
    (folder / "transforms.json").write_text(json.dumps(transforms, indent=1))


def write_collection_json(
    root: Path, category: str, entries: list[dict], scene_box: np.ndarray, generator: dict | None = None
) -> None:
    """Write collection.json; `entries` are dicts with id, path, split, attributes, captions."""
    doc = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "category": category,
        "scene_box": np.asarray(scene_box, dtype=float).tolist(),
        "generator": generator or {},
        "objects": entries,
    }
    (root / "collection.json").write_text(json.dumps(doc, indent=1))


# --------------------------------------------------------------------------------------------
# Reading


def read_json(path: Path) -> dict:
    """Parse a JSON file into a dict, with a one-line error naming the file."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read ({err})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: malformed JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a JSON object at the top level")
    return doc


def check_rigid(c2w: np.ndarray, where: str) -> np.ndarray:
    """Return `c2w` as a (4, 4) float array, or fail if it is not a rigid camera-to-world transform."""
    try:
        c2w = np.asarray(c2w, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{where}: pose must be a 4x4 matrix of numbers (rows of equal length)") from None
    if c2w.shape == (3, 4):
        c2w = np.concatenate([c2w, [[0.0, 0.0, 0.0, 1.0]]])
    if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
        raise UserError(f"{where}: pose must be a finite 4x4 (or 3x4) matrix, got shape {c2w.shape}")
    rot = c2w[:3, :3]
    if not np.allclose(c2w[3], [0, 0, 0, 1], atol=1e-5):
        raise UserError(f"{where}: pose's last row is {c2w[3].tolist()}, not [0, 0, 0, 1]")
    if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-3) or np.linalg.det(rot) < 0:
        raise UserError(f"{where}: pose is not a rigid transform (its 3x3 part is not a rotation)")
    return c2w


def check_image_sizes(views: ObjectViews) -> None:
    """Every image must exist, be complete (not truncated), and match its camera's width and height."""
    for path, intr in zip(views.image_paths, views.intrinsics):
        size = verify_image(path)
        if size != (intr.width, intr.height):
            raise UserError(
                f"{path}: image is {size[0]}x{size[1]} but its camera says {intr.width}x{intr.height}"
            )


def _number(doc: dict, key: str, path: Path) -> float:
    value = doc.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value) or value <= 0:
        raise UserError(f"{path}: '{key}' must be a positive number, got {value!r}")
    return float(value)


def _frames(doc: dict, path: Path) -> list[dict]:
    frames = doc.get("frames")
    if not isinstance(frames, list) or not frames:
        raise UserError(f"{path}: 'frames' must be a non-empty list")
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise UserError(f"{path}: frame {i} needs 'file_path' and 'transform_matrix'")
    return frames


def read_transforms(folder: Path, object_id: str) -> ObjectViews:
    """Read one object folder written by `write_object_views` (nerfstudio-style transforms.json)."""
    path = folder / "transforms.json"
    doc = read_json(path)
    frames = _frames(doc, path)
    w, h = int(_number(doc, "w", path)), int(_number(doc, "h", path))
    intr = Intrinsics(w, h, _number(doc, "fl_x", path), _number(doc, "fl_y", path),
                      _number(doc, "cx", path), _number(doc, "cy", path))
    names = [str(f["file_path"]) for f in frames]
    c2ws = np.stack([check_rigid(f["transform_matrix"], f"{path} frame {f['file_path']}") for f in frames])
    index = {name: i for i, name in enumerate(names)}
    view_splits = {}
    for split in VIEW_SPLITS:
        listed = doc.get(f"{split}_filenames", [])
        unknown = [n for n in listed if n not in index]
        if unknown:
            raise UserError(f"{path}: {split}_filenames lists {unknown[0]!r}, which is not a frame")
        view_splits[split] = [index[n] for n in listed]
    return ObjectViews(object_id, [folder / n for n in names], c2ws, [intr] * len(names), view_splits)


def read_clipnerf_collection(root: Path) -> Collection:
    path = root / "collection.json"
    doc = read_json(path)
    if doc.get("format") != FORMAT_NAME:
        raise UserError(f"{path}: 'format' is {doc.get('format')!r}, expected {FORMAT_NAME!r}")
    entries = doc.get("objects")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: 'objects' must be a non-empty list")
    objects = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise UserError(f"{path}: object {i} needs a string 'id'")
        split = entry.get("split", "train")
        if split not in OBJECT_SPLITS:
            raise UserError(f"{path}: object {entry['id']!r} has split {split!r}, expected one of {OBJECT_SPLITS}")
        views = read_transforms(root / entry.get("path", entry["id"]), entry["id"])
        views.split = split
        views.attributes = entry.get("attributes", {})
        views.captions = entry.get("captions", [])
        if not isinstance(views.attributes, dict):
            raise UserError(f"{path}: object {entry['id']!r}: 'attributes' must be an object (name: value)")
        if not isinstance(views.captions, list) or not all(isinstance(c, str) for c in views.captions):
            raise UserError(f"{path}: object {entry['id']!r}: 'captions' must be a list of strings")
        objects.append(views)
    try:
        box = np.asarray(doc.get("scene_box", UNIT_SCENE_BOX), dtype=np.float64)
    except (TypeError, ValueError):
        box = np.zeros(0)
    if box.shape != (2, 3) or not np.all(np.isfinite(box)) or not np.all(box[1] > box[0]):
        raise UserError(f"{path}: 'scene_box' must be [[xmin, ymin, zmin], [xmax, ymax, zmax]]")
    return Collection(str(doc.get("category", "objects")), objects, box, "collection")


# OpenCV (x right, y down, z forward) to OpenGL (x right, y up, z back): flip camera y and z.
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def _read_numbers(path: Path) -> list[list[float]]:
    try:
        return [[float(x) for x in line.split()] for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except ValueError as err:
        raise UserError(f"{path}: expected whitespace-separated numbers ({err})") from None


def read_srn_object(folder: Path, eval_every: int) -> ObjectViews:
    """One SRN object: rgb/*.png, pose/*.txt (OpenCV camera-to-world), intrinsics.txt.

    intrinsics.txt: first line `f cx cy 0`, last line `height width`. Every `eval_every`-th view
    is held out for evaluation.
    """
    rows = _read_numbers(folder / "intrinsics.txt")
    if len(rows) < 2 or len(rows[0]) < 3 or len(rows[-1]) != 2:
        raise UserError(f"{folder / 'intrinsics.txt'}: expected 'f cx cy 0' first and 'height width' last")
    focal, cx, cy = rows[0][:3]
    height, width = (int(v) for v in rows[-1])
    images = sorted((folder / "rgb").glob("*.png"))
    if not images:
        raise UserError(f"{folder / 'rgb'}: no .png images")
    c2ws = []
    for image in images:
        pose_path = folder / "pose" / f"{image.stem}.txt"
        values = np.asarray(sum(_read_numbers(pose_path), []))
        if values.size not in (12, 16):
            raise UserError(f"{pose_path}: expected 16 numbers (a 4x4 pose), got {values.size}")
        c2ws.append(check_rigid(values.reshape(-1, 4), str(pose_path)) @ _CV_TO_GL)
    n = len(images)
    held_out = every_kth(n, eval_every)
    splits = {"train": [i for i in range(n) if i not in held_out], "val": held_out, "test": held_out}
    intr = Intrinsics(width, height, focal, focal, cx, cy)
    return ObjectViews(folder.name, images, np.stack(c2ws), [intr] * n, splits)


def every_kth(n: int, k: int) -> list[int]:
    """Indices of every k-th of n views, the first included: those held out for evaluation
    (none when k is not positive or there is a single view, which training needs)."""
    return list(range(0, n, k)) if k > 0 and n > 1 else []


def _is_srn_object(folder: Path) -> bool:
    return (folder / "rgb").is_dir() and (folder / "pose").is_dir()


def read_srn_collection(root: Path, eval_every: int) -> Collection:
    folders = [root] if _is_srn_object(root) else sorted(p for p in root.iterdir() if _is_srn_object(p))
    objects = [read_srn_object(f, eval_every) for f in folders]
    return Collection(root.name, objects, cube(SRN_HALF_SIZE), "srn")


def read_blender_scene(root: Path, eval_every: int = 8) -> Collection:
    """A Blender synthetic scene (transforms_{train,val,test}.json) as a one-object collection.

    A missing val split uses the test views and vice versa; a scene with neither (one's own
    renders, often) holds out every `eval_every`-th training view, as the SRN reader does.
    """
    paths, c2ws, intrinsics, splits = [], [], [], {}
    for split in VIEW_SPLITS:
        path = root / f"transforms_{split}.json"
        if not path.exists():
            continue
        doc = read_json(path)
        fov_deg = float(np.degrees(_number(doc, "camera_angle_x", path)))
        files = []
        for frame in _frames(doc, path):
            file = root / str(frame["file_path"])
            files.append(file if file.suffix else file.with_suffix(".png"))
            c2ws.append(check_rigid(frame["transform_matrix"], f"{path} frame {frame['file_path']}"))
        # The format has no image size: take the first image's; check_image_sizes checks the rest.
        width, height = image_size(files[0])
        intrinsics += [Intrinsics.from_fov(width, height, fov_deg)] * len(files)
        splits[split] = list(range(len(paths), len(paths) + len(files)))
        paths += files
    if "val" not in splits and "test" not in splits:
        held_out = [splits["train"][i] for i in every_kth(len(splits["train"]), eval_every)]
        splits["train"] = [i for i in splits["train"] if i not in held_out]
        splits["val"] = held_out
    splits["val"] = splits.get("val") or splits.get("test", [])
    splits["test"] = splits.get("test") or splits["val"]
    views = ObjectViews(root.name, paths, np.stack(c2ws), intrinsics, splits)
    return Collection("scene", [views], cube(BLENDER_HALF_SIZE), "blender")


def read_collection(
    root: Path, srn_eval_every: int = 8, scene_half_size: float | None = None, blender_eval_every: int = 8
) -> Collection:
    """Read any supported layout under `root`, detected from its files.

    scene_half_size, when given, replaces the scene box with a cube of that half size;
    srn_eval_every and blender_eval_every: see the readers.
    """
    root = Path(root)
    if scene_half_size is not None and not scene_half_size > 0:
        raise UserError(f"--scene-half-size must be positive, got {scene_half_size}")
    if not root.exists():
        raise UserError(f"{root}: data folder not found")
    if not root.is_dir():
        raise UserError(f"{root}: expected a folder (collection, SRN or Blender layout)")
    if (root / "collection.json").exists():
        collection = read_clipnerf_collection(root)
    elif (root / "transforms_train.json").exists():
        collection = read_blender_scene(root, blender_eval_every)
    elif _is_srn_object(root) or any(_is_srn_object(p) for p in root.iterdir() if p.is_dir()):
        collection = read_srn_collection(root, srn_eval_every)
    else:
        raise UserError(
            f"{root}: not a collection (no collection.json, transforms_train.json, or SRN rgb/ + pose/ folders)"
        )
    if scene_half_size is not None:
        collection.scene_box = cube(scene_half_size)
    for views in collection.objects:
        check_image_sizes(views)
    return collection
