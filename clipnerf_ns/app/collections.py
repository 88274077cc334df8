"""`clipnerf synth` and `clipnerf render-meshes`: render procedural objects or mesh files into a
new collection (the data ns-train reads)."""

from __future__ import annotations

import functools
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import tyro

from clipnerf_ns.data.build import ObjectJob, ViewPlan, build_collection, heldout_splits, merge_collections
from clipnerf_ns.data.meshes import discover_meshes, load_object
from clipnerf_ns.data.synth import sample_object
from clipnerf_ns.data.synth_parts import GENERATOR_VERSION
from clipnerf_ns.validation import Bounds


def _synth_object(category: str, version: int, seed: int):
    obj = sample_object(category, np.random.default_rng(seed), version)
    return obj.mesh, obj.attributes, obj.captions


def _mesh_object(source, colors: str, up: str, seed: int):
    return load_object(source, np.random.default_rng(seed), colors=colors, up=up)


@dataclass(kw_only=True)
class _WritesCollection:
    """Options shared by the commands that render objects into a new collection."""

    out: Path
    """Output folder for the collection (written atomically: nothing is left behind on failure)."""
    seed: int = 0
    """Random seed: the same seed gives the same collection."""
    heldout_fraction: float = 0.1
    """Fraction of objects held out entirely (split 'test' in collection.json), never trained on."""
    plan: Annotated[ViewPlan, tyro.conf.OmitArgPrefixes] = field(default_factory=ViewPlan)
    """Cameras and rendering."""
    workers: Annotated[int, Bounds(0, 256)] = 0
    """Parallel worker processes; 0 means one per CPU core."""
    overwrite: bool = False
    """Replace the output folder if it exists."""

    def _build(self, category: str, object_ids: list[str], makers: list) -> Path:
        splits = heldout_splits(len(object_ids), self.heldout_fraction)
        jobs = [
            ObjectJob(object_id, make, _object_seed(self.seed, i), split)
            for i, (object_id, make, split) in enumerate(zip(object_ids, makers, splits))
        ]
        return build_collection(
            self.out, category, jobs, self.plan, self.workers or None, self.overwrite, _generator_info(self)
        )


@dataclass(kw_only=True)
class Synth(_WritesCollection):
    """Generate a procedural category collection: parametric meshes with attributes and captions,
    rendered into posed RGBA views (a collection that `ns-train --data` reads)."""

    category: tyro.conf.Positional[Literal["chairs", "cars"]]
    """Which procedural category to generate."""
    num_objects: Annotated[int, Bounds(1, 100_000)] = 100
    """Number of objects."""
    generator_version: Annotated[int, Bounds(1, GENERATOR_VERSION)] = GENERATOR_VERSION
    """Version of the procedural generator (1: as before December 2026, when backs reclined less
    and rear wings were a pixel high). Collections record it; the shipped model's is version 1."""

    def main(self) -> Path:
        prefix = self.category.rstrip("s")
        ids = [f"{prefix}_{i:04d}" for i in range(self.num_objects)]
        return self._build(self.category, ids, [functools.partial(_synth_object, self.category, self.generator_version)] * len(ids))


@dataclass(kw_only=True)
class RenderMeshes(_WritesCollection):
    """Render any meshes (OBJ/PLY/GLB files, or folders of part OBJs as in PartNet) into a
    collection: each is normalised to the unit box, coloured, and rendered like `synth`. A PartNet
    chair folder with its result.json becomes a chair like `synth`'s: fitted to the chairs' frame,
    its parts coloured by name, its attributes measured on the labelled parts, and captioned."""

    meshes: Path
    """A mesh file, a folder of mesh files, or a folder of part folders."""
    category: str = "objects"
    """Category name written into collection.json."""
    colors: Literal["parts", "palette", "materials", "gray"] = "parts"
    """Part colours. parts: a named colour per semantic part where PartNet's result.json labels the
    parts (seat, back, base, arms; recorded in the attributes and captions, as `synth` colours its
    chairs), else a palette colour per part file. palette: a random colour per part file. materials:
    the files' own colours. gray: plain gray (labelled chairs keep their shape attributes)."""
    up: Literal["y", "z"] = "y"
    """The files' up axis (ShapeNet and PartNet are y-up, with their front towards +z)."""
    heldout_fraction: float = 0.0
    """Fraction of objects held out entirely (split 'test' in collection.json)."""

    def main(self) -> Path:
        sources = discover_meshes(self.meshes)
        makers = [functools.partial(_mesh_object, src, self.colors, self.up) for src in sources]
        return self._build(self.category, [src.object_id for src in sources], makers)


@dataclass(kw_only=True)
class MergeCollections:
    """Merge collections into one that `ns-train --data` reads, e.g. procedural chairs from `clipnerf
    synth chairs` and real PartNet chairs from `clipnerf render-meshes --category chairs`: every
    object is copied with its split (held-out objects stay held out), attributes and captions."""

    collections: tyro.conf.Positional[tuple[Path, ...]]
    """Two or more collection folders (each with its collection.json), all of one resolution."""
    out: Path
    """Output folder for the merged collection (written atomically)."""
    category: Optional[str] = None
    """Category of the merged collection; by default the sources' own, which must then agree."""
    overwrite: bool = False
    """Replace the output folder if it exists."""

    def main(self) -> Path:
        return merge_collections(list(self.collections), self.out, self.category, self.overwrite)


def _object_seed(seed: int, index: int) -> int:
    """Independent per-object seed, so object i is the same whatever --num-objects is."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def synth_object_again(options: dict, index: int):
    """Object `index` of a `clipnerf synth` collection (a `ProceduralObject`: mesh, attributes,
    captions), made again from the options its collection.json records."""
    return sample_object(options["category"], np.random.default_rng(_object_seed(options["seed"], index)),
                         options.get("generator_version", 1))  # collections before versions: 1


def _generator_info(command: _WritesCollection) -> dict:
    """collection.json's record of its generator: its options, and the clipnerf command that writes
    this collection, built from them (sys.argv may be another command's: `clipnerf demo` regenerates
    the shipped model's collection)."""
    options = _jsonable(asdict(command))
    name, positional = {Synth: ("synth", ("category",)), RenderMeshes: ("render-meshes", ())}[type(command)]
    words = ["clipnerf", name, *(str(options[key]) for key in positional)]
    # Worker processes and overwriting change how a collection is written, not what it holds.
    flags = {k: v for k, v in options.items() if k not in (*positional, "workers", "overwrite", "plan")}
    for key, value in {**flags, **options["plan"]}.items():
        words += [f"--{key.replace('_', '-')}", str(value)]
    return {"command": shlex.join(words), "options": options}


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
