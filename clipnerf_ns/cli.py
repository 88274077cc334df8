"""`clipnerf`: the project's command line (tyro subcommands)."""

from __future__ import annotations

import functools
import shlex
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import numpy as np
import tyro

# nerfstudio's modules (imported by the editing commands) use torch.jit.script, which torch now
# deprecates: not the user's concern, and it must not precede our one-line errors.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)

from clipnerf_ns.clip.domain_config import DomainTraining
from clipnerf_ns.data.build import ObjectJob, ViewPlan, build_collection, heldout_splits
from clipnerf_ns.data.meshes import discover_meshes, load_object
from clipnerf_ns.data.synth import sample_object
from clipnerf_ns.demo import Demo
from clipnerf_ns.editing.commands import EditCommand, EvalCommand
from clipnerf_ns.editing.invert_config import InversionConfig
from clipnerf_ns.eval.judge_config import JudgeTraining
from clipnerf_ns.errors import UserError
from clipnerf_ns.export import ExportCommand
from clipnerf_ns.validation import MAX_COUNT, MAX_RESOLUTION, Bounds, check_numbers


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

    def main(self) -> Path:
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


@dataclass(kw_only=True)
class TrainClip(DomainTraining):
    """Train the compact offline CLIP on renders and captions of procedural chairs and cars, then
    print its zero-shot retrieval and colour-word accuracy on held-out objects. The shipped
    weights come from this command (see the README)."""

    def main(self) -> Path:
        from clipnerf_ns.clip.domain import format_figures, train_clip

        path, training = train_clip(self)
        _report(training, "heldout_figures", format_figures)
        return path


@dataclass(kw_only=True)
class TrainJudge(JudgeTraining):
    """Train the attribute judge (a small ConvNet, no CLIP) on procedural renders against their true
    attributes, then print its accuracy per question on held-out objects. The shipped judge comes
    from this command (see the README)."""

    def main(self) -> Path:
        from clipnerf_ns.eval.judge import format_accuracy, train_judge

        path, training = train_judge(self)
        _report(training, "heldout_accuracy", format_accuracy)
        return path


def _report(training: dict, figures_key: str, format_figures) -> None:
    """Held-out figures and timings of a training command."""
    if figures_key in training:
        print(format_figures(training[figures_key]))
    print(f"trained in {training['train_seconds']:.0f} s (rendering {training['render_seconds']:.0f} s); "
          f"final loss {training['final_loss']:.3f}")


@dataclass
class Invert:
    """Invert an image into a trained run (the paper's section 3.3): find the camera pose, shape
    code and appearance code that render it. Writes codes.safetensors (for `clipnerf edit`),
    pose.json, comparison.png (input | render | error) and a config.yml that ns-render and
    ns-viewer load to show the inverted object."""

    load_config: Path
    """The run's config.yml (written by ns-train)."""
    image: Path
    """The image to invert: RGB or RGBA, any size."""
    output_dir: Path
    """Folder for the results."""
    mask: Optional[Path] = None
    """Foreground mask (white = object, same size as the image); default: the image's alpha
    channel, else pixels that differ from the border colour."""
    inversion: Annotated[InversionConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=InversionConfig)
    """The optimisation."""
    overwrite: bool = False
    """Replace earlier results in the output folder."""

    def main(self) -> Path:
        from clipnerf_ns.editing.invert import invert_to_folder

        out, pose = invert_to_folder(self.load_config, self.image, self.mask, self.output_dir, self.inversion, self.overwrite)
        print(f"PSNR {pose['psnr']:.2f} dB at azimuth {pose['azimuth_deg']:.1f}, elevation {pose['elevation_deg']:.1f} deg, "
              f"distance {pose['distance']:.2f}; ns-viewer --load-config {out / 'config.yml'}")
        return out


@dataclass
class Pack:
    """Write a mapper run and its stage-1 run as the two weight files the package ships
    (chairs-small.safetensors and chairs-small-mappers.safetensors: fp32 safetensors carrying each
    run's config and the command of its collection), which `clipnerf demo` turns back into runs."""

    load_config: Path
    """config.yml of the mapper run (ns-train clip-nerf-mappers); its stage-1 run is found from it."""
    out: Path
    """Folder for the two files (the package's is clipnerf_ns/pretrained)."""

    def main(self) -> Path:
        from clipnerf_ns.pretrained import pack

        for path in pack(self.load_config, self.out):
            print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")
        return self.out


@dataclass
class SelectObject:
    """Write a config that ns-render and ns-viewer load to show one object of a trained run
    (rays of camera paths carry no object, so the config names it)."""

    load_config: Path
    """The run's config.yml (written by ns-train)."""
    object: str
    """Object id (e.g. chair_0007) or index in the run."""
    output_dir: Path
    """Folder for the new config.yml; it still loads the run's checkpoint."""
    overwrite: bool = False
    """Replace an existing config.yml there."""

    def main(self) -> Path:
        from clipnerf_ns.runs import load_run, nerf_of, read_run_config, resolve_object, write_render_config

        config = read_run_config(self.load_config)
        _, pipeline = load_run(self.load_config)
        config.pipeline.model.render_object = resolve_object(nerf_of(pipeline).object_ids, self.object)
        path = write_render_config(config, self.output_dir, self.overwrite)
        print(f"ns-render camera-path --load-config {path} ... renders {self.object}")
        return path


@dataclass
class Interpolate:
    """Render a strip of in-between objects: codes interpolated from one training object to
    another, shape only, appearance only, and both (one row each)."""

    load_config: Path
    """The run's config.yml (written by ns-train)."""
    objects: tuple[str, str]
    """The two end objects (ids or indices)."""
    output: Path = Path("interpolation.png")
    """PNG to write."""
    steps: Annotated[int, Bounds(2, 64)] = 7
    """Images per row, ends included."""
    resolution: Annotated[int, Bounds(8, MAX_RESOLUTION)] = 128
    """Image size in pixels."""
    azimuth: float = 40.0
    """Camera azimuth in degrees (0 looks at the object's front)."""
    elevation: Annotated[float, Bounds(-90, 90)] = 25.0
    """Camera elevation in degrees."""

    def main(self) -> Path:
        from PIL import Image

        from clipnerf_ns.runs import interpolation_strip, load_run, nerf_of, resolve_object

        _, pipeline = load_run(self.load_config)
        model = nerf_of(pipeline)
        a, b = (resolve_object(model.object_ids, name) for name in self.objects)
        strip = interpolation_strip(model, a, b, self.steps, self.resolution, self.azimuth, self.elevation)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(strip).save(self.output)
        print(f"rows: shape, appearance, both; columns: {self.objects[0]} -> {self.objects[1]}")
        return self.output


@dataclass
class Turntable:
    """Write an orbit camera path (nerfstudio's camera-path JSON) for
    `ns-render camera-path --camera-path-filename PATH`."""

    output: Path = Path("turntable.json")
    """JSON file to write."""
    frames: Annotated[int, Bounds(1, MAX_COUNT)] = 60
    """Cameras on the orbit."""
    seconds: Annotated[float, Bounds(0.01, 3600)] = 4.0
    """Length of the video ns-render makes of it."""
    resolution: Annotated[int, Bounds(8, MAX_RESOLUTION)] = 128
    """Image size in pixels (square)."""
    elevation: Annotated[float, Bounds(-90, 90)] = 20.0
    """Camera elevation in degrees."""
    distance: Annotated[float, Bounds(0.01, 100)] = 2.2
    """Distance from the centre of the scene box (the collections' cameras use 2.2)."""
    fov: Annotated[float, Bounds(1, 179)] = 40.0
    """Field of view in degrees."""

    def main(self) -> Path:
        import json

        from clipnerf_ns.data.render import ring_poses

        poses = ring_poses(self.frames, self.distance, self.elevation)
        path = {
            "camera_type": "perspective",
            "render_height": self.resolution,
            "render_width": self.resolution,
            "seconds": self.seconds,
            "camera_path": [
                {"camera_to_world": pose.reshape(-1).tolist(), "fov": self.fov, "aspect": 1.0} for pose in poses
            ],
        }
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.write_text(json.dumps(path, indent=1))
        return self.output


def _object_seed(seed: int, index: int) -> int:
    """Independent per-object seed, so object i is the same whatever --num-objects is."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


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


Command = Union[
    Annotated[Synth, tyro.conf.subcommand("synth")],
    Annotated[RenderMeshes, tyro.conf.subcommand("render-meshes")],
    Annotated[SelectObject, tyro.conf.subcommand("select-object")],
    Annotated[Interpolate, tyro.conf.subcommand("interpolate")],
    Annotated[Turntable, tyro.conf.subcommand("turntable")],
    Annotated[Demo, tyro.conf.subcommand("demo")],
    Annotated[TrainClip, tyro.conf.subcommand("train-clip")],
    Annotated[TrainJudge, tyro.conf.subcommand("train-judge")],
    Annotated[EditCommand, tyro.conf.subcommand("edit")],
    Annotated[Invert, tyro.conf.subcommand("invert")],
    Annotated[EvalCommand, tyro.conf.subcommand("eval")],
    Annotated[ExportCommand, tyro.conf.subcommand("export")],
    Annotated[Pack, tyro.conf.subcommand("pack")],
]


def entrypoint(argv: list[str] | None = None) -> None:
    """Parse the command line, run the command; user mistakes print one line and exit 2."""
    command = tyro.cli(Command, args=argv, prog="clipnerf")
    start = time.perf_counter()
    try:
        check_numbers(command)
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
