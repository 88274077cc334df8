"""Method specifications registered with nerfstudio (`ns-train clip-nerf`, `ns-train clip-nerf-small`).

`clip-nerf` has the paper's sizes (trunk 8 x 256, deformation 4 x 256, codes 128 + 128) and is
meant for a GPU; `clip-nerf-small` trains a category in minutes on two CPU cores.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Type

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from clipnerf_ns.data.datamanager import CollectionDataManagerConfig
from clipnerf_ns.data.dataparser import CollectionDataParserConfig
from clipnerf_ns.editing.invert import inversion_optimizers
from clipnerf_ns.errors import UserError
from clipnerf_ns.fields.conditional_field import FieldSizes
from clipnerf_ns.models.clip_nerf import ClipNerfModelConfig
from clipnerf_ns.pipelines.clip_nerf_pipeline import ClipNerfPipelineConfig
from clipnerf_ns.pipelines.invert_pipeline import InvertPipelineConfig
from clipnerf_ns.pipelines.mapper_pipeline import MapperPipelineConfig

PAPER_SIZES = FieldSizes(
    shape_dim=128, appearance_dim=128, deform_layers=4, deform_width=256, trunk_layers=8, trunk_width=256,
    color_layers=1, color_width=128,
)
SMALL_SIZES = FieldSizes(
    shape_dim=32, appearance_dim=32, deform_layers=2, deform_width=64, trunk_layers=4, trunk_width=64,
    color_layers=1, color_width=64,
)


@dataclass
class ExponentialDecayConfig(SchedulerConfig):
    """Learning rate decaying exponentially from its initial value to `lr_final` over `max_steps`."""

    _target: Type = field(default_factory=lambda: ExponentialDecay)
    lr_final: float = 1e-5
    """Learning rate at `max_steps` and after."""
    max_steps: int = 100_000
    """Steps of the decay."""


class ExponentialDecay(Scheduler):
    """Like nerfstudio's exponential decay, but its state holds Python floats only (nerfstudio's holds
    numpy scalars, which `torch.load(weights_only=True)` refuses, so ns-eval could not load runs)."""

    config: ExponentialDecayConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> LambdaLR:
        ratio = self.config.lr_final / lr_init
        steps = max(self.config.max_steps, 1)
        return LambdaLR(optimizer, lambda step: float(ratio ** min(step / steps, 1.0)))


def _optimizers(field_lr: float, code_lr: float, steps: int) -> dict:
    def adam(lr: float) -> dict:
        return {
            "optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15),
            "scheduler": ExponentialDecayConfig(lr_final=lr / 10, max_steps=steps),
        }

    return {"fields": adam(field_lr), "codes": adam(code_lr), "discriminator": adam(2e-4)}


def clip_nerf_trainer(
    method_name: str, sizes: FieldSizes, steps: int, rays_per_batch: int, coarse: int, fine: int
) -> TrainerConfig:
    return TrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=500,
        steps_per_eval_image=1000,
        steps_per_eval_all_images=10**9,
        steps_per_save=1000,
        max_num_iterations=steps,
        mixed_precision=False,
        pipeline=ClipNerfPipelineConfig(
            datamanager=CollectionDataManagerConfig(
                dataparser=CollectionDataParserConfig(alpha_color="none"),
                train_num_rays_per_batch=rays_per_batch,
                eval_num_rays_per_batch=rays_per_batch,
            ),
            model=ClipNerfModelConfig(field=sizes, num_coarse_samples=coarse, num_fine_samples=fine),
        ),
        optimizers=_optimizers(field_lr=5e-4 if sizes is PAPER_SIZES else 2e-3, code_lr=1e-2, steps=steps),
        viewer=ViewerConfig(num_rays_per_chunk=16384),
        vis="viewer",
    )


clip_nerf = MethodSpecification(
    config=clip_nerf_trainer("clip-nerf", PAPER_SIZES, steps=200_000, rays_per_batch=2048, coarse=64, fine=64),
    description="CLIP-NeRF conditional NeRF for a category (paper sizes; meant for a GPU).",
)
clip_nerf_small = MethodSpecification(
    config=clip_nerf_trainer("clip-nerf-small", SMALL_SIZES, steps=24_000, rays_per_batch=1024, coarse=48, fine=24),
    description="CLIP-NeRF conditional NeRF sized for a CPU (a category trains in minutes on two cores).",
)

def stage_trainer(method_name: str, pipeline, optimizers: dict, steps: int, eval_every: int, save_every: int) -> TrainerConfig:
    """Trainer of a stage that starts from a trained clip-nerf run (mappers, inversion)."""
    return TrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=eval_every,
        steps_per_eval_image=save_every,
        steps_per_eval_all_images=10**9,
        steps_per_save=save_every,
        max_num_iterations=steps,
        mixed_precision=False,
        pipeline=pipeline,
        optimizers=optimizers,
        viewer=ViewerConfig(num_rays_per_chunk=16384),
        vis="viewer",
    )


clip_nerf_mappers = MethodSpecification(
    config=stage_trainer(
        "clip-nerf-mappers",
        MapperPipelineConfig(datamanager=CollectionDataManagerConfig(dataparser=CollectionDataParserConfig(alpha_color="none"))),
        {
            "mappers": {
                "optimizer": AdamOptimizerConfig(lr=1e-3, eps=1e-15),
                "scheduler": ExponentialDecayConfig(lr_final=1e-4, max_steps=1200),
            }
        },
        steps=1200, eval_every=100, save_every=250,
    ),
    description="CLIP-NeRF stage 2: trains the shape and appearance code mappers of a clip-nerf run "
    "(--pipeline.stage1 RUN/config.yml); the NeRF and CLIP stay frozen.",
)

clip_nerf_invert = MethodSpecification(
    config=stage_trainer(
        "clip-nerf-invert", InvertPipelineConfig(), inversion_optimizers(), steps=300, eval_every=50, save_every=100
    ),
    description="CLIP-NeRF inversion: camera pose and codes of one image (--pipeline.image) in a trained "
    "clip-nerf run (--pipeline.stage1 RUN/config.yml); the run stays frozen.",
)


def _print_user_errors(kind, value, traceback, previous=sys.excepthook):
    """ns-train/ns-eval/ns-render print our UserError as one line (exit 2), like the clipnerf CLI."""
    if issubclass(kind, UserError):
        print(f"clipnerf: error: {value}", file=sys.stderr)
        raise SystemExit(2)
    previous(kind, value, traceback)


sys.excepthook = _print_user_errors
