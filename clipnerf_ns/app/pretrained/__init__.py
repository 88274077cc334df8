"""The pretrained models shipped in the package, and how they are made and used.

- `chairs-small.safetensors`: `clip-nerf-small` trained on 400 procedural chairs (360 trained on);
- `chairs-small-mappers.safetensors`: its mappers: the appearance mapper trained with the compact
  CLIP (which ships in `clip/weights/`), the shape mapper read off the category with it;
- `chairs-small-encoder.safetensors`: the chairs model's inversion encoder (`clipnerf
  train-encoder`), which `clipnerf invert` starts from;
- `chairs-small-parts.safetensors`: the chairs model's part head (`clipnerf train-parts`), which
  makes colour prompts that name a part recolour that part alone;
- `unseen-chair.png`: a view of a chair of the same collection's held-out split, which neither the
  NeRF nor the mappers ever saw (the demo inverts it).

`clipnerf pack` writes the two weight files from a mapper run (and its stage-1 run); each file
carries the run's config and the command of the collection it was trained on. `materialize`
turns them back into ordinary ns-train run folders (config.yml + checkpoint) over a regenerated
copy of that collection, so that ns-viewer, ns-render, ns-eval and every clipnerf command load
them as they load the user's own runs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from clipnerf_ns.app.collections import Synth
from clipnerf_ns.app.runs import write_render_config
from clipnerf_ns.atomic import atomic_file, save_safetensors
from clipnerf_ns.config_yaml import load_config_yaml
from clipnerf_ns.data.build import ViewPlan
from clipnerf_ns.editing.invert_config import ENCODER_FILE
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.part_head_config import PART_HEAD_FILE

PRETRAINED_DIR = Path(__file__).parent
CHAIRS_SMALL = PRETRAINED_DIR / "chairs-small.safetensors"
CHAIRS_SMALL_MAPPERS = PRETRAINED_DIR / "chairs-small-mappers.safetensors"
CHAIRS_SMALL_ENCODER = PRETRAINED_DIR / "chairs-small-encoder.safetensors"
CHAIRS_SMALL_PARTS = PRETRAINED_DIR / "chairs-small-parts.safetensors"
SHIPPED_BESIDE_STAGE1 = {CHAIRS_SMALL_ENCODER: ENCODER_FILE, CHAIRS_SMALL_PARTS: PART_HEAD_FILE}
"""Files that ship beside the stage-1 weights, and their names in a run folder (beside config.yml)."""
UNSEEN_CHAIR = PRETRAINED_DIR / "unseen-chair.png"
UNSEEN_CHAIR_ID = "chair_0386"
"""The held-out chair `unseen-chair.png` shows (view 006 of its collection)."""
NERF_PREFIX, MAPPERS_PREFIX = "_model.nerf.", "_model.mappers."
GREEN_CHAIR = "chair_0343"
"""A green dining chair with a slatted back and no arms, which the mappers never trained on (one
of their held-out objects): the demo and the tests edit it."""
YELLOW_CHAIR = "chair_0008"
"""A yellow dining chair: its training views are the demo's and the tests' exemplar."""


@dataclass
class PretrainedRuns:
    """Run folders made from the shipped weights."""

    data: Path
    """The regenerated collection."""
    stage1: Path
    """config.yml of the clip-nerf-small run."""
    mappers: Path
    """config.yml of the mapper run."""


def pack(mapper_config: Path, out_dir: Path) -> tuple[Path, Path]:
    """Write the stage-1 and mapper weight files of a mapper run (fp32 safetensors with metadata)."""
    # deferred: the command line imports this module at start-up, and these import nerfstudio
    from clipnerf_ns.checkpoints import with_prefix
    from clipnerf_ns.editing.mapper_model import MapperModelConfig
    from clipnerf_ns.pipelines.runs import latest_checkpoint, read_run_config

    config = read_run_config(mapper_config)
    if not isinstance(config.pipeline.model, MapperModelConfig):
        raise UserError(f"{mapper_config}: not a mapper run (ns-train clip-nerf-mappers)")
    stage1_path = Path(config.pipeline.stage1)
    stage1 = read_run_config(stage1_path)
    collection = json.loads((Path(stage1.pipeline.datamanager.data) / "collection.json").read_text())
    _, state = latest_checkpoint(config)
    weights = state["pipeline"]
    nerf = shippable_nerf_state(with_prefix(weights, NERF_PREFIX))
    mappers = with_prefix(weights, MAPPERS_PREFIX)
    train_ids = [o["id"] for o in collection["objects"] if o["split"] == "train"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage1_file, mappers_file = out_dir / CHAIRS_SMALL.name, out_dir / CHAIRS_SMALL_MAPPERS.name
    save_safetensors(nerf, {
        "config": stage1_path.read_text(),
        "collection": json.dumps(collection["generator"]),
        "object_ids": json.dumps(train_ids),
        "step": str(latest_checkpoint(stage1)[1]["step"]),
    }, stage1_file)
    save_safetensors(mappers, {"config": Path(mapper_config).read_text(), "step": str(state["step"])}, mappers_file)
    for shipped, in_run in SHIPPED_BESIDE_STAGE1.items():  # the stage-1 run's encoder and part head ship with it
        if (stage1_path.parent / in_run).is_file():
            with atomic_file(out_dir / shipped.name) as partial:
                shutil.copyfile(stage1_path.parent / in_run, partial)
    return stage1_file, mappers_file


def shippable_nerf_state(state: dict) -> dict:
    """The stage-1 weights as shipped: the occupancy grids bit-packed (eight cells a byte) and
    without their running densities, which only training reads (a category of hundreds of objects
    would otherwise ship 60 MB of grids)."""
    import numpy as np
    import torch

    shipped = {k: v for k, v in state.items() if k not in ("occupancy", "occupancy_density")}
    shipped["occupancy_bits"] = torch.from_numpy(np.packbits(state["occupancy"].numpy(), axis=None))
    return shipped


def restored_nerf_state(shipped: dict, occupancy_shape: tuple[int, ...]) -> dict:
    """The stage-1 state dict back from `shippable_nerf_state`; the running densities restart at
    zero, which continued training replaces by fresh densities at each grid's next refresh."""
    import numpy as np
    import torch

    state = {k: v for k, v in shipped.items() if k != "occupancy_bits"}
    count = int(np.prod(occupancy_shape))
    packed = shipped["occupancy_bits"].numpy()
    if packed.shape != ((count + 7) // 8,):
        raise UserError(f"the shipped occupancy grids hold {packed.size * 8} cells, not the {count} of grids {occupancy_shape}")
    bits = np.unpackbits(packed, count=count)
    state["occupancy"] = torch.from_numpy(bits.astype(bool).reshape(occupancy_shape))
    state["occupancy_density"] = torch.zeros(occupancy_shape)
    return state


def _read(path: Path, keys: tuple[str, ...]) -> tuple[dict, dict]:
    """Tensors and metadata of a shipped weights file, whose metadata must hold `keys`."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise UserError(f"{path}: the pretrained weights are missing from the package (reinstall it)")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable weights file ({err})") from None
    missing = [key for key in keys if key not in metadata]
    if missing:
        raise UserError(f"{path}: not a clipnerf pretrained file (its metadata has no {missing[0]!r}; see clipnerf pack)")
    return tensors, metadata


def regenerate_collection(generator: dict, out: Path, views: int, eval_views: int, overwrite: bool) -> Path:
    """The collection a shipped model was trained on, with the same objects (each object's mesh
    and colours depend on the seed and its index only) and `views` training views per object."""
    options = generator["options"]
    plan = dict(options["plan"], views=views, eval_views=eval_views)
    return Synth(
        category=options["category"], out=out, num_objects=options["num_objects"], seed=options["seed"],
        generator_version=options.get("generator_version", 1),  # collections before versions: 1
        heldout_fraction=options["heldout_fraction"], plan=ViewPlan(**plan), overwrite=overwrite,
    ).main()


def _write_run(config, state: dict, step: int, out_dir: Path, timestamp: str) -> Path:
    """An ns-train run folder: config.yml and nerfstudio_models/step-N.ckpt (pipeline weights only)."""
    import torch  # deferred: the command line imports this module at start-up

    config.output_dir, config.experiment_name, config.timestamp = out_dir, "chairs", timestamp
    base = config.get_base_dir()
    checkpoints = base / config.relative_model_dir
    checkpoints.mkdir(parents=True, exist_ok=True)
    for old in checkpoints.glob("step-*.ckpt"):
        old.unlink()
    torch.save({"step": step, "pipeline": state}, checkpoints / f"step-{step:09d}.ckpt")
    return write_render_config(config, base, overwrite=True)


def materialize(out_dir: Path, views: int = 4, eval_views: int = 1, overwrite: bool = False,
                data: Optional[Path] = None) -> PretrainedRuns:
    """Run folders of the shipped chairs model and mappers under `out_dir` (runs/chairs/...), over
    the regenerated collection (`out_dir/chairs`, or an existing copy at `data`)."""
    from clipnerf_ns.data.dataparser import CollectionDataParserConfig  # deferred: nerfstudio is slow to import

    nerf, stage1_meta = _read(CHAIRS_SMALL, ("config", "collection", "object_ids", "step"))
    mappers, mappers_meta = _read(CHAIRS_SMALL_MAPPERS, ("config", "step"))
    # The configs are parsed (safely: a weights file may come from anyone) before any work.
    stage1 = load_config_yaml(stage1_meta["config"], f"{CHAIRS_SMALL} (its metadata)")
    mapper = load_config_yaml(mappers_meta["config"], f"{CHAIRS_SMALL_MAPPERS} (its metadata)")
    out_dir = Path(out_dir)
    if data is None:
        data = regenerate_collection(json.loads(stage1_meta["collection"]), out_dir / "chairs", views, eval_views, overwrite)
    ids = CollectionDataParserConfig(data=data).setup().get_dataparser_outputs("train").metadata["object_ids"]
    if list(ids) != json.loads(stage1_meta["object_ids"]):
        raise UserError(f"{data}: its training objects are not the ones the pretrained chairs model was trained on")
    grid = stage1.pipeline.model.occupancy_resolution
    nerf = restored_nerf_state(nerf, (len(ids), grid, grid, grid))
    stage1.data = stage1.pipeline.datamanager.data = Path(data).resolve()
    stage1_path = _write_run(stage1, {"_model." + k: v for k, v in nerf.items()}, int(stage1_meta["step"]),
                             (out_dir / "runs").resolve(), "pretrained")
    for shipped, in_run in SHIPPED_BESIDE_STAGE1.items():  # commands find them beside the run's config.yml
        if shipped.is_file():
            shutil.copyfile(shipped, stage1_path.parent / in_run)
    mapper.pipeline.stage1 = stage1_path
    mapper.data = mapper.pipeline.datamanager.data = Path(data).resolve()
    state = {"_model.nerf." + k: v for k, v in nerf.items()} | {"_model.mappers." + k: v for k, v in mappers.items()}
    mapper_path = _write_run(mapper, state, int(mappers_meta["step"]), (out_dir / "runs").resolve(), "pretrained")
    return PretrainedRuns(Path(data), stage1_path, mapper_path)


@dataclass
class Pack:
    """Write a mapper run and its stage-1 run as the two weight files the package ships
    (chairs-small.safetensors and chairs-small-mappers.safetensors: fp32 safetensors carrying each
    run's config and the command of its collection), which `clipnerf demo` turns back into runs."""

    load_config: Path
    """config.yml of the mapper run (ns-train clip-nerf-mappers); its stage-1 run is found from it."""
    out: Path
    """Folder for the two files (the package's is clipnerf_ns/app/pretrained)."""

    def main(self) -> Path:
        for path in pack(self.load_config, self.out):
            print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")
        return self.out
