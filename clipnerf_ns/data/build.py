"""Render many objects into a collection on disk, in parallel, with a progress bar.

Shared by `clipnerf synth` (procedural objects) and `clipnerf render-meshes` (mesh files): each
object is a picklable job that builds a `ColoredMesh` plus its attributes and captions in a
worker process; the worker renders and writes the object's folder; the parent writes
collection.json and renames the finished folder into place.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable

import numpy as np
from PIL import Image

from clipnerf_ns.atomic import atomic_output_dir
from clipnerf_ns.data.cameras import hemisphere_poses, ring_poses
from clipnerf_ns.data.collection import (
    UNIT_SCENE_BOX,
    read_collection,
    read_json,
    read_transforms,
    write_collection_json,
    write_object_views,
)
from clipnerf_ns.data.render import ColoredMesh, Intrinsics, render
from clipnerf_ns.errors import UserError
from clipnerf_ns.progress import progress_bar
from clipnerf_ns.validation import MAX_COUNT, Bounds, check_numbers


@dataclass(frozen=True)
class ViewPlan:
    """Which views each object gets: random training views plus a fixed evaluation ring."""

    views: Annotated[int, Bounds(1, MAX_COUNT)] = 24
    """Training views per object, drawn at random on the upper hemisphere (elevation 5 to 65 deg)."""
    eval_views: Annotated[int, Bounds(0, MAX_COUNT)] = 8
    """Held-out evaluation views per object: a fixed ring, the same for every object."""
    resolution: Annotated[int, Bounds(8, 4096)] = 128
    """Image width and height in pixels."""
    fov_deg: Annotated[float, Bounds(1, 120)] = 40.0
    """Horizontal field of view of every camera, in degrees."""
    camera_distance: Annotated[float, Bounds(0.9, 100)] = 2.2
    """Distance from the cameras to the centre of the unit box the objects live in."""
    eval_elevation_deg: float = 25.0
    """Elevation of the evaluation ring, in degrees."""
    supersample: Annotated[int, Bounds(1, 8)] = 3
    """Antialiasing: silhouette and part-boundary pixels are averaged over this many squared rays."""

    def validate(self) -> None:
        """One-line errors for impossible options (the ranges are the fields' `Bounds`; the camera
        distance keeps the cameras outside the unit box, whose half diagonal is 0.87)."""
        check_numbers(self)

    def cameras(self, rng: np.random.Generator) -> tuple[np.ndarray, Intrinsics, dict[str, list[int]]]:
        """Camera-to-worlds (views + eval_views, 4, 4), intrinsics, and the train/val/test view split."""
        train = hemisphere_poses(self.views, self.camera_distance, rng)
        ring = ring_poses(self.eval_views, self.camera_distance, self.eval_elevation_deg)
        c2ws = np.concatenate([train, ring]) if self.eval_views else train
        held_out = list(range(self.views, self.views + self.eval_views))
        splits = {"train": list(range(self.views)), "val": held_out, "test": held_out}
        return c2ws, Intrinsics.from_fov(self.resolution, self.resolution, self.fov_deg), splits


@dataclass(frozen=True)
class ObjectJob:
    """One object to render. `make(seed)` returns (mesh, attributes, captions); it must be picklable."""

    object_id: str
    make: Callable[[int], tuple[ColoredMesh, dict, list[str]]]
    seed: int
    split: str = "train"


def _render_job(args: tuple[ObjectJob, ViewPlan, Path]) -> dict:
    job, plan, root = args
    mesh, attributes, captions = job.make(job.seed)
    c2ws, intrinsics, splits = plan.cameras(np.random.default_rng([job.seed, 1]))
    images = render(mesh, c2ws, intrinsics, plan.supersample).rgba
    write_object_views(root / job.object_id, images, c2ws, intrinsics, splits)
    return {"id": job.object_id, "path": job.object_id, "split": job.split, "attributes": attributes, "captions": captions}


def heldout_splits(num_objects: int, fraction: float) -> list[str]:
    """Object splits: the last round-down(fraction * n) objects are held out ('test')."""
    if not 0.0 <= fraction < 1.0:
        raise UserError(f"--heldout-fraction must be in [0, 1), got {fraction}")
    held = int(fraction * num_objects)
    return ["train"] * (num_objects - held) + ["test"] * held


def build_collection(
    out: Path,
    category: str,
    jobs: list[ObjectJob],
    plan: ViewPlan,
    workers: int | None = None,
    overwrite: bool = False,
    generator: dict | None = None,
) -> Path:
    """Render every job into a new collection at `out` (written atomically). Returns `out`."""
    plan.validate()
    if not jobs:
        raise UserError("nothing to render: no objects")
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    with atomic_output_dir(out, overwrite) as tmp:
        tasks = [(job, plan, tmp) for job in jobs]
        entries = {}
        with progress_bar() as progress, contextlib.ExitStack() as stack:
            bar = progress.add_task(f"rendering {category}", total=len(jobs), status="")
            if workers == 1:
                results = map(_render_job, tasks)
            else:  # the pool's context exit terminates the workers, also on an error
                pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
                results = pool.imap_unordered(_render_job, tasks)
            for entry in results:
                entries[entry["id"]] = entry
                progress.advance(bar)
        ordered = [entries[job.object_id] for job in jobs]
        write_collection_json(tmp, category, ordered, UNIT_SCENE_BOX, generator)
        write_preview(tmp, [job.object_id for job in jobs])
    return out


def merge_collections(sources: list[Path], out: Path, category: str | None = None, overwrite: bool = False) -> Path:
    """Write one collection holding every object of `sources` (collections written by `clipnerf
    synth` or `render-meshes`), splits, attributes and captions kept, atomically at `out`.

    The sources must share their scene box and image size, and their category unless `category`
    names the merged one. An object id that an earlier source already used gets the name of its
    source folder in front ("partnet-1325"). Returns `out`."""
    if len(sources) < 2:
        raise UserError("merging needs at least two collections")
    categories = _check_mergeable(sources)
    if category is None and len(categories) > 1:
        raise UserError(f"the collections are of different categories ({', '.join(categories)}): "
                        "name the merged one with --category")
    docs = [read_json(src / "collection.json") for src in sources]
    with atomic_output_dir(out, overwrite) as tmp, progress_bar() as progress:
        bar = progress.add_task("merging collections", total=sum(len(d["objects"]) for d in docs), status="")
        entries: list[dict] = []
        used: set[str] = set()
        for src, doc in zip(sources, docs):
            for entry in doc["objects"]:
                object_id = entry["id"] if entry["id"] not in used else f"{src.name}-{entry['id']}"
                if object_id in used:
                    raise UserError(f"{src}: object id {entry['id']!r} is taken twice, even with the folder's name in front")
                used.add(object_id)
                shutil.copytree(src / entry.get("path", entry["id"]), tmp / object_id)
                entries.append({**entry, "id": object_id, "path": object_id})
                progress.advance(bar)
        merged = [{"path": str(src), "category": doc.get("category"), "objects": len(doc["objects"]),
                   "generator": doc.get("generator", {})} for src, doc in zip(sources, docs)]
        write_collection_json(tmp, category or categories[0], entries, docs[0]["scene_box"], {"merged": merged})
        ids = [e["id"] for e in entries]
        write_preview(tmp, ids[:: max(1, len(ids) // 16)])  # objects from every source
    return out


def _check_mergeable(sources: list[Path]) -> list[str]:
    """Read every source in full (images and poses checked) and fail with one line unless they
    share their scene box and image size; returns their categories."""
    read = [read_collection(src) for src in sources]
    first = {(k.width, k.height) for k in read[0].objects[0].intrinsics}
    for src, col in zip(sources, read):
        if col.layout != "collection":
            raise UserError(f"{src}: not a clipnerf collection (no collection.json); only collections merge")
        if not np.allclose(col.scene_box, read[0].scene_box):
            raise UserError(f"{src}: scene box {col.scene_box.tolist()} differs from {sources[0]}'s {read[0].scene_box.tolist()}")
        sizes = {(k.width, k.height) for views in col.objects for k in views.intrinsics}
        if sizes != first:
            raise UserError(f"{src}: images of {_sizes(sizes)} pixels, {sources[0]}'s are {_sizes(first)}: "
                            "merge collections of one resolution")
    return sorted({col.category for col in read})


def _sizes(sizes: set[tuple[int, int]]) -> str:
    return "/".join(f"{w}x{h}" for w, h in sorted(sizes))


def write_preview(root: Path, object_ids: list[str], max_objects: int = 16, columns: int = 8) -> Path:
    """preview.png: one evaluation view (else the first view) of the first objects, on white."""
    tiles = []
    for object_id in object_ids[:max_objects]:
        views = read_transforms(root / object_id, object_id)
        index = (views.view_splits["test"] or [0])[0]
        with Image.open(views.image_paths[index]) as image:
            tile = Image.new("RGB", image.size, "white")
            tile.paste(image, mask=image.getchannel("A"))
        tiles.append(tile)
    w, h = tiles[0].size
    cols = min(columns, len(tiles))
    sheet = Image.new("RGB", (cols * w, -(-len(tiles) // cols) * h), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * w, (i // cols) * h))
    sheet.save(root / "preview.png")
    return root / "preview.png"
