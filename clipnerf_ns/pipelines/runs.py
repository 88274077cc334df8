"""Loading a trained clip-nerf run (RUN/config.yml written by ns-train, and its checkpoints): a
stage-1 run or a mapper run, as a pipeline in evaluation mode."""

from __future__ import annotations

from pathlib import Path

from nerfstudio.engine.trainer import TrainerConfig

from clipnerf_ns.checkpoints import read_newest_checkpoint
from clipnerf_ns.config_yaml import load_config_yaml
from clipnerf_ns.editing.mapper_model import MapperModelConfig
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.clip_nerf import ClipNerfModel, ClipNerfModelConfig


def read_run_config(config_path: Path) -> TrainerConfig:
    """The TrainerConfig of a clip-nerf run, with its checkpoint checked to exist."""
    config_path = Path(config_path)
    if not config_path.is_file():
        raise UserError(f"{config_path}: no such config file (ns-train writes RUN/config.yml)")
    config = load_config_yaml(config_path.read_text(), str(config_path))
    if not isinstance(config, TrainerConfig) or not isinstance(config.pipeline.model, (ClipNerfModelConfig, MapperModelConfig)):
        raise UserError(f"{config_path}: not the config of a clip-nerf run")
    checkpoints = config.get_checkpoint_dir()
    if not checkpoints.is_dir() or not any(checkpoints.glob("step-*.ckpt")):
        raise UserError(f"{config_path}: no checkpoint in {checkpoints} (has the run saved one yet?)")
    return config


def latest_checkpoint(config: TrainerConfig) -> tuple[Path, dict]:
    """The run's newest checkpoint that loads, and its contents (weights only)."""
    return read_newest_checkpoint(config.get_checkpoint_dir())


def load_run(config_path: Path):
    """The run's pipeline with its latest checkpoint, in evaluation mode (a clip-nerf run, or a
    mapper run: `nerf_of(pipeline)` is the conditional NeRF of either)."""
    # deferred: importing eval_utils loads nerfstudio's method registry, which imports our method
    # configs (app.methods) and so the pipelines that import this module
    from nerfstudio.utils.eval_utils import eval_setup

    read_run_config(config_path)
    config, pipeline, _, _ = eval_setup(Path(config_path), test_mode="inference")
    pipeline.eval()
    return config, pipeline


def nerf_of(pipeline) -> ClipNerfModel:
    """The conditional NeRF of a clip-nerf run or of a mapper run (whose model wraps it)."""
    return pipeline.model if isinstance(pipeline.model, ClipNerfModel) else pipeline.model.nerf
