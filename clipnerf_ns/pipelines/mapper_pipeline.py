"""Stage 2, `ns-train clip-nerf-mappers`: train the shape and appearance code mappers.

The stage loads a stage-1 run (`--pipeline.stage1 RUN/config.yml`), freezes its NeRF and the
CLIP model, and trains only the mappers. Each step samples codes (training objects and draws
from the code prior), orbit views, and targets: prompts from the category's prompt library, or
exemplar images (training views of other objects). The loss is the CLIP distance between the
edited render and the target (or its directional variant), a penalty on the size of the code
change, and the stage-1 discriminator's opinion when stage 1 trained one. The shape and the
appearance mapper take turns, each with its own prompts; neither moves the other's code.

The run's checkpoint holds the NeRF and the mappers, so edits need only this run (and its
stage-1 config.yml, which names the data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Type

import torch
import torch.nn.functional as F
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig

from clipnerf_ns.checkpoints import with_prefix
from clipnerf_ns.codes import BACKGROUNDS, over_background
from clipnerf_ns.config_yaml import load_config_yaml
from clipnerf_ns.data.images import frame_on_object
from clipnerf_ns.data.render import FRAMING_MARGIN
from clipnerf_ns.editing.edit import apply_change, editor_for, exemplar_view, render_views
from clipnerf_ns.editing.losses import clip_distance
from clipnerf_ns.editing.mapper_model import MapperModel, MapperModelConfig
from clipnerf_ns.errors import UserError
from clipnerf_ns.ffmpeg import ensure_ffmpeg_on_path
from clipnerf_ns.models.clip_nerf import ClipNerfModelConfig
from clipnerf_ns.pipelines import nerfstudio_hooks
from clipnerf_ns.pipelines.clip_nerf_pipeline import show_selected_object_in_training_views
from clipnerf_ns.pipelines.ranks import without_ddp_prefix, wrap_for_ranks
from clipnerf_ns.pipelines.runs import latest_checkpoint, read_run_config
from clipnerf_ns.pipelines.viewer_panel import attach_viewer_panel


@dataclass
class MapperPipelineConfig(VanillaPipelineConfig):
    """Stage 2: trains the code mappers of a trained clip-nerf run."""

    _target: Type = field(default_factory=lambda: MapperPipeline)
    stage1: Optional[Path] = None
    """config.yml of the trained clip-nerf run whose NeRF the mappers edit."""
    model: MapperModelConfig = field(default_factory=MapperModelConfig)
    """Mappers, CLIP and the editing objective."""


def read_stage1(path: Optional[Path], need_checkpoint: bool) -> TrainerConfig:
    """The stage-1 run's config (and, when training, check it has a checkpoint)."""
    if path is None:
        raise UserError("the mapper stage needs a trained clip-nerf run: pass --pipeline.stage1 RUN/config.yml")
    if need_checkpoint:
        config = read_run_config(path)
    else:
        if not Path(path).is_file():
            raise UserError(f"{path}: the stage-1 run of these mappers is gone (no such config file)")
        config = load_config_yaml(Path(path).read_text(), str(path))
    if not isinstance(config.pipeline.model, ClipNerfModelConfig):
        raise UserError(f"{path}: stage 1 must be a clip-nerf run (ns-train clip-nerf or clip-nerf-small)")
    return config


class MapperPipeline(VanillaPipeline):
    """nerfstudio's trainer drives the mapper objective; the datamanager only supplies exemplars."""

    config: MapperPipelineConfig
    model: MapperModel

    def __init__(self, config: MapperPipelineConfig, device: str, test_mode: str = "val", world_size: int = 1,
                 local_rank: int = 0, grad_scaler=None):
        ensure_ffmpeg_on_path()
        training = test_mode == "val"
        stage1 = read_stage1(config.stage1, need_checkpoint=training)
        data = config.datamanager.data
        config.datamanager = stage1.pipeline.datamanager
        if data is not None:
            config.datamanager.data = data
        nerf = stage1.pipeline.model
        nerf.render_object, nerf.render_codes = config.model.render_object, config.model.render_codes
        nerf.eval_num_rays_per_chunk = config.model.eval_num_rays_per_chunk
        config.model.nerf = nerf
        nerfstudio_hooks.install()
        super().__init__(config, device, test_mode, 1, local_rank, grad_scaler)  # wrapped for the ranks below
        wrap_for_ranks(self, world_size, local_rank)
        if world_size > 1:  # each rank draws its own codes and prompts (rank 0 as one process would)
            self.model.generator.manual_seed(self.model.config.seed + torch.distributed.get_rank())
        attach_viewer_panel(self, self.model.nerf, lambda: editor_for(self.model), ("mapper", "optimize"),
                            Path(config.stage1).parent)
        if training:
            self._load_stage1(stage1)
            self._collect_exemplars()
            if self.model.mappers.shape_is_read:
                self.model.fit_read_shape_mapper()
        else:
            show_selected_object_in_training_views(self.datamanager)

    def _load_stage1(self, stage1: TrainerConfig) -> None:
        _, checkpoint = latest_checkpoint(stage1)
        self.model.nerf.load_state_dict(with_prefix(checkpoint["pipeline"], "_model."))

    @torch.no_grad()
    def _collect_exemplars(self) -> None:
        """CLIP embeddings of the first `exemplar_views` training views of every object, each framed
        on its object (by its alpha) as the CLIP's views are."""
        dataset = self.datamanager.train_dataset
        index = dataset.cameras.metadata["object_index"].reshape(-1).tolist()
        per_object: dict[int, list[int]] = {}
        for image, obj in enumerate(index):
            if len(per_object.setdefault(obj, [])) < self.model.config.exemplar_views:
                per_object[obj].append(image)
        white = torch.tensor(BACKGROUNDS["white"])
        embeddings = []
        for obj in sorted(per_object):
            views = [dataset.get_image_float32(i) for i in per_object[obj]]
            framed = [exemplar_view(self.model.clip, self.model.nerf, frame_on_object(
                over_background(v, white), v[..., 3] if v.shape[-1] == 4 else torch.ones(v.shape[:2]), FRAMING_MARGIN))
                for v in views]
            size = self.model.clip.image_size
            images = torch.stack([F.interpolate(f.permute(2, 0, 1)[None], size=(size, size), mode="bilinear",
                                                antialias=True)[0].permute(1, 2, 0) for f in framed])
            embeddings.append(self.model.clip.encode_image(images.to(self.device)))
        self.model.exemplar_embeddings = torch.stack(embeddings)

    def get_train_loss_dict(self, step: int):
        self.model.train()
        losses = self._model(objective=(self.model.target_at(step), self.model.mapper_objects, self.model.generator))
        return {}, losses, {}

    def state_dict(self, *args, **kwargs):
        return without_ddp_prefix(super().state_dict(*args, **kwargs))

    @torch.no_grad()
    def get_eval_loss_dict(self, step: int):
        """The objective on the held-out objects (or prior draws), with a fixed draw."""
        self.eval()
        generator = torch.Generator().manual_seed(1234 + step % 2)
        losses = self.model.mapper_losses(self.model.target_at(step), self.model.heldout, generator)
        self.train()
        return {}, losses, {}

    @torch.no_grad()
    def get_eval_image_metrics_and_images(self, step: int):
        """Before / after views of one held-out object under the first prompt of each library list."""
        self.eval()
        model = self.model
        index = model.heldout[0] if model.heldout else 0
        codes = model.nerf.object_codes(torch.tensor([index], device=model.nerf.box_min.device))
        view, size = (torch.tensor([30.0]), torch.tensor([25.0])), 96
        extent = model.clip.frame_extent(model.nerf.category)
        tiles, metrics = [render_views(model.nerf, codes, *view, size, extent)[0]], {"num_rays": 3 * size * size}
        for target in ("shape", "appearance"):
            embedding = model.prompt_embeddings[target][:1]
            edited = apply_change(codes, target, model.mappers.change(target, embedding, codes, model.nerf.code_prior()))
            render = render_views(model.nerf, edited, *view, size, extent)
            tiles.append(render[0])
            metrics[f"{target}_clip_similarity"] = float(1 - clip_distance(model.clip.encode_image(render), embedding))
        self.train()
        return metrics, {"before_shape_appearance": torch.cat(tiles, dim=1)}

    @torch.no_grad()
    def get_average_eval_image_metrics(self, step=None, output_path=None, get_std: bool = False):
        metrics, _ = self.get_eval_image_metrics_and_images(step or 0)
        metrics.pop("num_rays")
        return metrics
