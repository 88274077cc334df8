"""The clip-nerf pipeline: nerfstudio's vanilla pipeline plus per-object evaluation and, when the
adversarial loss is on, patch-shaped ray batches."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Type

import torch
import torchvision.utils as vutils
from nerfstudio.data.pixel_samplers import PatchPixelSamplerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig

from clipnerf_ns.editing.edit import editor_for
from clipnerf_ns.ffmpeg import ensure_ffmpeg_on_path
from clipnerf_ns.models.clip_nerf import ClipNerfModel, ClipNerfModelConfig
from clipnerf_ns.pipelines import nerfstudio_hooks
from clipnerf_ns.pipelines.ranks import without_ddp_prefix, wrap_for_ranks
from clipnerf_ns.pipelines.viewer_panel import attach_viewer_panel
from clipnerf_ns.progress import progress_bar


@dataclass
class ClipNerfPipelineConfig(VanillaPipelineConfig):
    """Pipeline of the clip-nerf methods."""

    _target: Type = field(default_factory=lambda: ClipNerfPipeline)
    model: ClipNerfModelConfig = field(default_factory=ClipNerfModelConfig)
    """The conditional NeRF."""


class ClipNerfPipeline(VanillaPipeline):
    """Vanilla pipeline whose evaluation reports metrics per object as well as overall."""

    config: ClipNerfPipelineConfig
    model: ClipNerfModel

    def __init__(
        self,
        config: ClipNerfPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[torch.cuda.amp.GradScaler] = None,
    ):
        ensure_ffmpeg_on_path()  # ns-render checks for ffmpeg right after building the pipeline
        if config.model.adversarial:  # the discriminator judges whole patches, so rays come as patches
            config.datamanager.patch_size = config.model.patch_size
            # given as the sampler's own config: nerfstudio's default one rounds the rays per batch to
            # its default 32 x 32 patches before taking our size, which leaves none below 1024 rays
            config.datamanager.pixel_sampler = PatchPixelSamplerConfig(patch_size=config.model.patch_size)
        nerfstudio_hooks.install()
        # Empty space driven to densities near exp(-100) gives denormal gradients, which the CPU computes
        # about ten times slower (the in-between haze term: 1 s a step against 65 ms); they are zero here.
        torch.set_flush_denormal(True)
        super().__init__(config, device, test_mode, 1, local_rank, grad_scaler)  # wrapped for the ranks below
        wrap_for_ranks(self, world_size, local_rank)
        attach_viewer_panel(self, self.model, lambda: editor_for(self.model), ("optimize",))
        if test_mode != "val":
            show_selected_object_in_training_views(self.datamanager)

    def state_dict(self, *args, **kwargs):
        return without_ddp_prefix(super().state_dict(*args, **kwargs))

    @torch.no_grad()
    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ):
        """Mean metrics over held-out views, also per object (`psnr/<object id>`, `ssim/<object id>`).

        The overall figures are means over objects (each object's views averaged first).
        """
        self.eval()
        per_object: dict[int, list[dict[str, float]]] = defaultdict(list)
        loader = self.datamanager.fixed_indices_eval_dataloader
        if output_path is not None:
            output_path.mkdir(parents=True, exist_ok=True)
        with progress_bar(transient=True) as progress:
            task = progress.add_task("Evaluating held-out views", total=len(loader), status="")
            for idx, (camera, batch) in enumerate(loader):
                outputs = self.model.get_outputs_for_camera(camera)
                metrics, images = self.model.get_image_metrics_and_images(outputs, batch)
                per_object[int(camera.metadata["object_index"].reshape(-1)[0])].append(metrics)
                if output_path is not None:
                    for key, image in images.items():
                        vutils.save_image(image.permute(2, 0, 1).cpu(), output_path / f"eval_{key}_{idx:04d}.png")
                progress.advance(task)
        self.train()
        return summarize_per_object(per_object, self.model.object_ids, get_std)


def show_selected_object_in_training_views(datamanager) -> None:
    """Strip the object index from the training cameras (every copy the datamanager keeps), so that
    their rays show the model's display object: `render_object` or `render_codes` of the config.

    For pipelines loaded to use a trained run rather than to train it (`eval_setup`: ns-export,
    ns-eval, ns-render, ns-viewer): nerfstudio's exporters rebuild "the scene" from the training
    cameras (pointcloud and poisson sample their rays, tsdf renders them), and the scene of a run
    is the object its config selects; with each camera showing its own object they would pile the
    whole category into one cloud. The evaluation cameras keep their objects, so ns-eval still
    scores every object on its own views."""
    dataset = getattr(datamanager, "train_dataset", None)
    holders = (dataset, getattr(dataset, "_dataparser_outputs", None), getattr(datamanager, "train_dataparser_outputs", None),
               getattr(datamanager, "train_ray_generator", None))
    for holder in holders:
        cameras = getattr(holder, "cameras", None)
        if cameras is not None and cameras.metadata:
            cameras.metadata.pop("object_index", None)


def summarize_per_object(
    per_object: dict[int, list[dict[str, float]]], object_ids: list[str], get_std: bool = False
) -> dict[str, float]:
    """Average each metric within objects, then across objects; keep psnr and ssim per object."""
    object_means = {
        index: {key: sum(m[key] for m in views) / len(views) for key in views[0]} for index, views in per_object.items()
    }
    result: dict[str, float] = {}
    for key in next(iter(object_means.values())):
        values = torch.tensor([means[key] for means in object_means.values()])
        result[key] = float(values.mean())
        if get_std:
            result[f"{key}_std"] = float(values.std()) if len(values) > 1 else 0.0
    result["num_objects"] = float(len(object_means))
    for index, means in sorted(object_means.items()):
        for key in ("psnr", "ssim"):
            result[f"{key}/{object_ids[index]}"] = means[key]
    return result
