"""`clipnerf-collection`: nerfstudio DataParser for multi-object collections.

Reads our collection format, the SRN ShapeNet layout, or a single Blender scene (see
`clipnerf_ns.data.collection`). Every camera carries its object's index in
`cameras.metadata["object_index"]` (shape (N, 1)), which nerfstudio broadcasts onto every ray,
so the model knows which object's codes to use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Type

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from clipnerf_ns.data.cameras import make_cameras, orbit_of_cameras
from clipnerf_ns.data.collection import Collection, ObjectViews, read_collection
from clipnerf_ns.errors import UserError

ALPHA_COLORS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


@dataclass
class CollectionDataParserConfig(DataParserConfig):
    """Multi-object posed image collection (clipnerf collection, SRN ShapeNet, or one Blender scene)."""

    _target: Type = field(default_factory=lambda: CollectionDataParser)
    data: Path = Path("data/chairs")
    """Folder with collection.json, SRN object folders (rgb/ pose/ intrinsics.txt), or a Blender scene."""
    objects: Literal["train", "test", "all"] = "train"
    """Which objects to load: the training objects, the held-out objects, or both."""
    max_objects: Optional[int] = None
    """Load only the first this many of the selected objects (handy for quick experiments)."""
    alpha_color: Literal["white", "black", "none"] = "white"
    """Background composited under RGBA images; 'none' keeps the alpha channel for the model."""
    srn_eval_every: int = 8
    """SRN layout only: every this-many-th view of each object is held out for evaluation."""
    blender_eval_every: int = 8
    """Blender scene with only transforms_train.json: every this-many-th view is held out for evaluation."""
    scene_half_size: Optional[float] = None
    """Half the side of the scene box; default: collection.json's box, 1.0 for SRN, 1.5 for Blender."""


def select_objects(collection: Collection, which: str, max_objects: Optional[int]) -> list[ObjectViews]:
    """The objects a run uses, in a fixed order: position in this list is the object index."""
    objects = [o for o in collection.objects if which == "all" or o.split == which]
    if max_objects is not None:
        if max_objects < 1:
            raise UserError(f"--max-objects must be at least 1, got {max_objects}")
        objects = objects[:max_objects]
    if not objects:
        raise UserError(f"the collection has no objects in split {which!r}")
    return objects


def build_cameras(objects: list[ObjectViews], view_split: str) -> tuple[Cameras, list[Path]]:
    """nerfstudio Cameras (with per-camera object index) and image paths of one view split."""
    c2ws, intr, paths, object_index = [], [], [], []
    for index, views in enumerate(objects):
        for i in views.view_splits.get(view_split, []):
            c2ws.append(views.c2ws[i][:3, :4])
            k = views.intrinsics[i]
            intr.append((k.fx, k.fy, k.cx, k.cy, k.width, k.height))
            paths.append(views.image_paths[i])
            object_index.append(index)
    if not paths:
        raise UserError(f"the collection has no '{view_split}' views for the selected objects")
    cameras = make_cameras(np.stack(c2ws), intr, torch.tensor(object_index, dtype=torch.long)[:, None])
    return cameras, paths


@dataclass
class CollectionDataParser(DataParser):
    config: CollectionDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        if getattr(self, "_collection", None) is None:  # read (and checked) once for both splits
            self._collection = read_collection(self.config.data, self.config.srn_eval_every, self.config.scene_half_size,
                                               self.config.blender_eval_every)
        collection = self._collection
        objects = select_objects(collection, self.config.objects, self.config.max_objects)
        view_split = split if split in ("train", "val", "test") else "test"
        cameras, paths = build_cameras(objects, view_split)
        alpha = ALPHA_COLORS.get(self.config.alpha_color)
        return DataparserOutputs(
            image_filenames=paths,
            cameras=cameras,
            alpha_color=None if alpha is None else torch.tensor(alpha),
            scene_box=SceneBox(aabb=torch.from_numpy(collection.scene_box).float()),
            metadata={
                "category": collection.category,
                "layout": collection.layout,
                "object_ids": [o.object_id for o in objects],
                "orbit": orbit_of_cameras(cameras.camera_to_worlds.numpy(), cameras.fx.numpy()[:, 0], cameras.width.numpy()[:, 0]),
                "captions": [o.captions for o in objects],
                "attributes": [o.attributes for o in objects],
            },
        )


clipnerf_collection = DataParserSpecification(
    config=CollectionDataParserConfig(),
    description="multi-object posed collections (clipnerf collection, SRN ShapeNet, Blender scene)",
)
