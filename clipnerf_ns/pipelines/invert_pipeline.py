"""`ns-train clip-nerf-invert`: inversion of one image as a pipeline that nerfstudio's trainer drives.

The stage-1 run (`--pipeline.stage1 RUN/config.yml`) is loaded frozen; the pipeline's parameters
are the inversion variables (pose, shape and appearance codes in prior units), in three
optimizer groups `pose`, `shape`, `appearance`. One trainer step is one `Inversion.losses` call,
the very step `clipnerf invert` takes, so both give the same codes for the same settings. At the
last step the run folder gets the same `codes.safetensors`, `pose.json` and `comparison.png`
as `clipnerf invert` writes; `ns-viewer --load-config` on the run shows the inverted object.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Type

import torch
from nerfstudio.configs.base_config import InstantiateConfig
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import Pipeline, VanillaPipelineConfig
from torch.nn import Parameter

from clipnerf_ns.codes import model_fingerprint, psnr
from clipnerf_ns.data.cameras import make_cameras, orbit_c2w
from clipnerf_ns.data.images import image_size
from clipnerf_ns.data.photos import comparison_image, read_photo
from clipnerf_ns.editing.inversion_encoder import run_encoder
from clipnerf_ns.editing.invert import (
    Inversion,
    InversionConfig,
    InversionVariables,
    load_clip_for,
    prior_codes,
    start_inversion,
    write_results,
)
from clipnerf_ns.errors import UserError
from clipnerf_ns.ffmpeg import ensure_ffmpeg_on_path
from clipnerf_ns.models.clip_nerf import ClipNerfModel
from clipnerf_ns.pipelines import nerfstudio_hooks
from clipnerf_ns.pipelines.runs import load_run


@dataclass
class InvertDataManagerConfig(InstantiateConfig):
    """The image being inverted, as nerfstudio's trainer sees it: one view whose camera is the inversion's."""

    _target: Type = field(default_factory=lambda: InvertDataManager)
    data: Optional[Path] = None
    """Unused (ns-train's --data lands here); the image is --pipeline.image."""
    train_num_rays_per_batch: int = 0
    """Random pixels per step; 0 keeps --pipeline.inversion.rays-per-step (0 there: every pixel)."""


class InvertDataManager:
    """What the trainer and viewer ask of a datamanager: the image as a one-view dataset."""

    def __init__(self, config: InvertDataManagerConfig, dataset: Optional[InputDataset], rays_per_batch: int) -> None:
        self.config = config
        self.train_dataset = dataset
        self.eval_dataset = dataset
        self.rays_per_batch = rays_per_batch

    def get_train_rays_per_batch(self) -> int:
        return self.rays_per_batch

    def get_training_callbacks(self, _attributes) -> list:
        return []

    def get_param_groups(self) -> dict:
        return {}

    def to(self, _device) -> "InvertDataManager":
        return self


@dataclass
class StageOneRendering:
    """Rendering settings of the frozen stage-1 model while inverting (None keeps the run's)."""

    num_coarse_samples: Optional[int] = None
    """Coarse samples per ray."""
    num_fine_samples: Optional[int] = None
    """Fine samples per ray."""
    eval_num_rays_per_chunk: Optional[int] = None
    """Rays per chunk of full-image renders."""

    def apply(self, model: ClipNerfModel) -> None:
        for name in ("num_coarse_samples", "num_fine_samples", "eval_num_rays_per_chunk"):
            if getattr(self, name) is not None:
                setattr(model.config, name, getattr(self, name))


@dataclass
class InvertPipelineConfig(VanillaPipelineConfig):
    """Invert one image into a trained clip-nerf run: camera pose, shape code and appearance code."""

    _target: Type = field(default_factory=lambda: InvertPipeline)
    stage1: Path = Path("RUN/config.yml")
    """The trained clip-nerf run (its config.yml, written by ns-train)."""
    image: Path = Path("image.png")
    """The image to invert (RGB or RGBA, any size)."""
    mask: Optional[Path] = None
    """Foreground mask of the image (white = object); default: its alpha channel, else background thresholding."""
    inversion: InversionConfig = field(default_factory=InversionConfig)
    """The optimisation (its `steps` is ignored here: the trainer's --max-num-iterations counts)."""
    datamanager: InvertDataManagerConfig = field(default_factory=InvertDataManagerConfig)
    """The image as the trainer sees it."""
    model: StageOneRendering = field(default_factory=StageOneRendering)
    """Rendering settings of the stage-1 model."""


class InvertPipeline(Pipeline):
    """The frozen stage-1 model (`_model`, shown by the viewer with the current codes) and the
    inversion variables (`variables`, the only parameters)."""

    config: InvertPipelineConfig

    def __init__(
        self,
        config: InvertPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[torch.cuda.amp.GradScaler] = None,
    ):

        if world_size > 1:
            raise UserError("clip-nerf-invert fits one image: run it on one device (--machine.num-devices 1)")
        nerfstudio_hooks.install()
        super().__init__()
        ensure_ffmpeg_on_path()
        self.config, self.test_mode, self.world_size = config, test_mode, world_size
        inversion_config = config.inversion
        if config.datamanager.train_num_rays_per_batch > 0:
            inversion_config = replace(inversion_config, rays_per_step=config.datamanager.train_num_rays_per_batch)
        inversion_config.check()
        photo = read_photo(config.image, config.mask, inversion_config.mask_threshold) if test_mode != "inference" else None
        _, stage1 = load_run(config.stage1)
        model: ClipNerfModel = stage1.model.to(device)
        model.requires_grad_(False)
        model.eval()
        config.model.apply(model)
        self._model = model
        self.fingerprint = model_fingerprint(model.field)
        self.total_steps = inversion_config.steps
        self.base_dir: Optional[Path] = None
        if photo is not None:
            clip = load_clip_for(inversion_config, device)
            encoder = run_encoder(config.stage1, self.fingerprint, inversion_config.start)
            self.inversion: Optional[Inversion] = start_inversion(model, photo, inversion_config, clip, encoder)
            self.variables = self.inversion.variables
        else:
            self.inversion = None
            sizes = model.config.field
            self.variables = InversionVariables(torch.zeros(7), sizes.shape_dim, sizes.appearance_dim).to(device)
        dataset = self._dataset() if self.inversion is not None else None
        pixels = self.inversion.target.resolution ** 2 if self.inversion is not None else 0
        rays = inversion_config.rays_per_step if 0 < inversion_config.rays_per_step < pixels else pixels
        self.datamanager = InvertDataManager(config.datamanager, dataset, rays)
        self._show_current()

    def _dataset(self) -> InputDataset:
        """The image at its own size, with the camera of the initial pose (for the viewer)."""

        width, height = image_size(self.config.image)
        scale = max(width, height) / self.inversion.target.resolution
        focal = self.inversion.target.focal * scale
        c2w = orbit_c2w(self.inversion.pose(detach=True)).cpu().numpy()[None]
        cameras = make_cameras(c2w, [(focal, focal, width / 2, height / 2, width, height)])
        outputs = DataparserOutputs(
            image_filenames=[self.config.image], cameras=cameras, alpha_color=torch.ones(3),
            scene_box=SceneBox(aabb=torch.stack([self._model.box_min, self._model.box_max]).cpu()),
        )
        return InputDataset(outputs)

    def train(self, mode: bool = True):
        """The stage-1 model always renders as in evaluation (no jittered samples)."""
        super().train(mode)
        self._model.eval()
        return self

    # ----- what the viewer and ns-render show

    def current_codes(self):
        mean, std = self._model.code_prior()
        return prior_codes(mean, std, self.variables.u_s.detach(), self.variables.u_a.detach())

    def _show_current(self) -> None:
        self._model.set_display(self.current_codes())

    # ----- the trainer's interface

    def _need_inversion(self) -> Inversion:
        if self.inversion is None:
            raise RuntimeError("this clip-nerf-invert pipeline was loaded for inference only")
        return self.inversion

    def get_train_loss_dict(self, step: int):
        loss_dict, metrics = self._need_inversion().losses(step, self.total_steps)
        return {}, loss_dict, metrics

    @torch.no_grad()
    def get_eval_loss_dict(self, step: int):
        loss_dict, metrics = self._need_inversion().losses(step, self.total_steps, train=False)
        return {}, loss_dict, metrics

    @torch.no_grad()
    def get_eval_image_metrics_and_images(self, step: int):
        inversion = self._need_inversion()
        render = inversion.render()["rgb"]
        metrics = {"psnr": float(psnr(render, inversion.target.rgb)), "num_rays": inversion.target.resolution ** 2}
        strip = torch.from_numpy(comparison_image(inversion.target.rgb, render)).float() / 255.0
        return metrics, {"img": strip}

    @torch.no_grad()
    def get_average_eval_image_metrics(self, step: Optional[int] = None, output_path: Optional[Path] = None,
                                       get_std: bool = False):
        metrics, _ = self.get_eval_image_metrics_and_images(step or 0)
        return {"psnr": metrics["psnr"], **({"psnr_std": 0.0} if get_std else {})}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: Optional[bool] = None):
        super().load_state_dict(state_dict, strict)
        self._show_current()

    def load_pipeline(self, loaded_state: Dict[str, Any], step: int) -> None:
        state = {(key[len("module."):] if key.startswith("module.") else key): value for key, value in loaded_state.items()}
        self.load_state_dict(state)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return self.variables.param_groups()

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        trainer = attributes.trainer
        if trainer is not None:
            self.total_steps = trainer._start_step + trainer.config.max_num_iterations
            self.base_dir = trainer.base_dir
        return [TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self._after_step)]

    def _after_step(self, step: int) -> None:
        last = step >= self.total_steps - 1
        if last or step % 50 == 49:
            self._show_current()
        if last and self.base_dir is not None:
            self.write_results(self.base_dir)

    def write_results(self, out_dir: Path) -> list[Path]:
        """codes.safetensors, pose.json and comparison.png of the current variables, as `clipnerf invert` writes them."""
        info = {"image": str(self.config.image), "stage1": str(self.config.stage1), "steps": self.total_steps,
                "method": "ns-train clip-nerf-invert"}
        return write_results(self._need_inversion(), out_dir, self.fingerprint, info)
