"""`clipnerf`: the project's command line (tyro subcommands)."""

from __future__ import annotations

import functools
import shlex
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
import tyro

from clipnerf_ns.data.build import ObjectJob, ViewPlan, build_collection, heldout_splits
from clipnerf_ns.data.meshes import discover_meshes, load_object
from clipnerf_ns.data.synth import sample_object
from clipnerf_ns.errors import UserError


def _synth_object(category: str, seed: int):
    obj = sample_object(category, np.random.default_rng(seed))
    return obj.mesh, obj.attributes, obj.captions


def _mesh_object(source, colors: str, up: str, seed: int):
    mesh, attributes = load_object(source, np.random.default_rng(seed), colors=colors, up=up)
    return mesh, attributes, []


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
    workers: int = 0
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
    num_objects: int = 100
    """Number of objects."""

    def main(self) -> Path:
        if self.num_objects < 1:
            raise UserError(f"--num-objects must be at least 1, got {self.num_objects}")
        prefix = self.category.rstrip("s")
        ids = [f"{prefix}_{i:04d}" for i in range(self.num_objects)]
        return self._build(self.category, ids, [functools.partial(_synth_object, self.category)] * len(ids))


@dataclass(kw_only=True)
class RenderMeshes(_WritesCollection):
    """Render any meshes (OBJ/PLY/GLB files, or folders of part OBJs as in PartNet) into a
    collection: each is normalised to the unit box, coloured, and rendered like `synth`."""

    meshes: Path
    """A mesh file, a folder of mesh files, or a folder of part folders."""
    category: str = "objects"
    """Category name written into collection.json."""
    colors: Literal["palette", "materials", "gray"] = "palette"
    """Part colours: a random palette colour per part, the files' own colours, or plain gray."""
    up: Literal["y", "z"] = "y"
    """The files' up axis (ShapeNet and PartNet are y-up, with their front towards +z)."""
    heldout_fraction: float = 0.0
    """Fraction of objects held out entirely (split 'test' in collection.json)."""

    def main(self) -> Path:
        sources = discover_meshes(self.meshes)
        makers = [functools.partial(_mesh_object, src, self.colors, self.up) for src in sources]
        return self._build(self.category, [src.object_id for src in sources], makers)


@dataclass
class Demo:
    """The README's main job, offline on the CPU in seconds: generate small procedural chair and
    car collections, read them back through the nerfstudio dataparser, and write previews."""

    out: Path = Path("demo_out")
    """Output folder."""
    num_objects: int = 16
    """Objects per category."""
    resolution: int = 64
    """Image size in pixels."""
    overwrite: bool = False
    """Replace earlier demo output."""

    def main(self) -> Path:
        from clipnerf_ns.data.dataparser import CollectionDataParserConfig

        plan = ViewPlan(views=24, eval_views=8, resolution=self.resolution)
        for category in ("chairs", "cars"):
            data = Synth(
                category=category, out=self.out / category, num_objects=self.num_objects, plan=plan, overwrite=self.overwrite
            ).main()
            train = CollectionDataParserConfig(data=data).setup().get_dataparser_outputs("train")
            captions = train.metadata["captions"][0][:2]
            print(
                f"{category}: {len(train.metadata['object_ids'])} training objects, "
                f"{len(train.image_filenames)} training views; preview {data / 'preview.png'}; "
                f"captions of {train.metadata['object_ids'][0]}: {captions}"
            )
        return self.out


def _object_seed(seed: int, index: int) -> int:
    """Independent per-object seed, so object i is the same whatever --num-objects is."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _generator_info(command) -> dict:
    return {"command": shlex.join(["clipnerf", *sys.argv[1:]]), "options": _jsonable(asdict(command))}


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


Command = Union[
    Annotated[Synth, tyro.conf.subcommand("synth")],
    Annotated[RenderMeshes, tyro.conf.subcommand("render-meshes")],
    Annotated[Demo, tyro.conf.subcommand("demo")],
]


def entrypoint(argv: list[str] | None = None) -> None:
    """Parse the command line, run the command; user mistakes print one line and exit 2."""
    command = tyro.cli(Command, args=argv, prog="clipnerf")
    # nerfstudio's modules use torch.jit.script, which torch now deprecates: not the user's concern.
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)
    start = time.perf_counter()
    try:
        result = command.main()
    except UserError as err:
        print(f"clipnerf: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("clipnerf: interrupted; nothing was written", file=sys.stderr)
        sys.exit(130)
    print(f"wrote {result} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    entrypoint()
