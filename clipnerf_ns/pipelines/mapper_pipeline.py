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
from typing import Dict, List, Literal, Optional, Type

import torch
import torch.nn.functional as F
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from torch import Tensor
from torch.nn import Parameter

from clipnerf_ns import nerfstudio_hooks
from clipnerf_ns.clip.config import ClipConfig
from clipnerf_ns.config_yaml import load_config_yaml
from clipnerf_ns.data.images import frame_on_object
from clipnerf_ns.data.render import FRAMING_MARGIN
from clipnerf_ns.editing.edit import (
    EditLossConfig, apply_change, edit_losses, editor_for, exemplar_view, random_views, render_views,
)
from clipnerf_ns.editing.losses import clip_distance
from clipnerf_ns.editing.mappers import Mappers
from clipnerf_ns.editing.prompts import load_prompt_library
from clipnerf_ns.errors import UserError
from clipnerf_ns.ffmpeg import ensure_ffmpeg_on_path
from clipnerf_ns.models.clip_nerf import BACKGROUNDS, ClipNerfModel, ClipNerfModelConfig, Codes, no_sdf_field, over_background
from clipnerf_ns.pipelines.clip_nerf_pipeline import show_selected_object_in_training_views


@dataclass
class MapperModelConfig(ModelConfig):
    """The frozen stage-1 NeRF, the frozen CLIP, and the two code mappers being trained."""

    _target: Type = field(default_factory=lambda: MapperModel)
    nerf: Optional[ClipNerfModelConfig] = None
    """Filled in from the stage-1 run (do not set)."""
    clip: ClipConfig = field(default_factory=ClipConfig)
    """The CLIP model (frozen): the project's compact CLIP by default."""
    loss: EditLossConfig = field(default_factory=EditLossConfig)
    """The editing objective."""
    hidden_width: int = 256
    """Hidden width of each mapper's two-layer MLP."""
    train_mappers: Literal["both", "shape", "appearance"] = "both"
    """Which mappers to train; `both` alternates between them, one per step."""
    views_per_step: int = 4
    """Edited objects per step (one rendered view each)."""
    prior_fraction: float = 0.5
    """Share of the codes drawn from the code prior (the rest are training objects)."""
    exemplar_fraction: float = 0.25
    """Share of steps whose targets are exemplar images instead of prompts."""
    exemplar_views: int = 2
    """Training views per object kept as exemplars."""
    heldout_objects: float = 0.2
    """Fraction of the training objects (the last ones) never used to train the mappers: evaluation edits them."""
    prompts: Optional[Path] = None
    """Prompt library (YAML); default: the package's clipnerf_ns/editing/prompt_libraries/<category>.yaml."""
    render_object: int = 0
    """Training object shown when the viewer opens and rendered along ns-render camera paths."""
    render_codes: Optional[Path] = None
    """A codes file (from `clipnerf edit` or `clipnerf invert`) shown instead of `render_object`."""
    seed: int = 0
    """Seed of the sampled codes, views and targets."""
    eval_num_rays_per_chunk: int = 16384
    """Rays rendered per chunk in the viewer."""

    sdf_field = property(no_sdf_field)


class MapperModel(Model):
    """Stage 2: frozen NeRF and CLIP, trainable mappers; see the module docstring."""

    config: MapperModelConfig

    def populate_modules(self):
        super().populate_modules()
        if self.config.nerf is None:
            raise UserError("the mapper stage needs a stage-1 run: pass --pipeline.stage1 RUN/config.yml")
        self.nerf: ClipNerfModel = self.config.nerf.setup(
            scene_box=self.scene_box, num_train_data=self.num_train_data, **self.kwargs
        )
        self.nerf.requires_grad_(False)
        self.nerf.eval()
        device = self.kwargs.get("device", "cpu")
        from clipnerf_ns.clip.encoder import ClipEncoder  # open_clip loads only when a model is built

        # CLIP is frozen and never part of the checkpoint, so it is kept out of the module tree.
        self.__dict__["clip"] = ClipEncoder.load(self.config.clip, device=device)
        sizes = self.config.nerf.field
        self.mappers = Mappers(self.clip.embed_dim, sizes.shape_dim, sizes.appearance_dim, self.config.hidden_width)
        self.nerf.editor.use_mappers(lambda: editor_for(self))
        self.category = self.nerf.category
        self.library = load_prompt_library(self.config.prompts, self.category)
        with torch.no_grad():
            self.prompt_embeddings = {
                target: self.clip.encode_text(list(self.library.for_target(target))) for target in ("shape", "appearance")
            }
            self.neutral_embedding = self.clip.encode_text([self.library.neutral])
        count = self.nerf.num_objects
        mapper_objects = max(1, count - int(round(count * self.config.heldout_objects)))
        self.mapper_objects = list(range(mapper_objects))
        self.heldout = list(range(mapper_objects, count))
        self.exemplar_embeddings: Optional[Tensor] = None  # (objects, views, d_clip), set by the pipeline
        self.generator = torch.Generator().manual_seed(self.config.seed)

    def train(self, mode: bool = True):
        super().train(mode)
        self.nerf.eval()  # frozen: no jittered samples, no training-only outputs
        return self

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"mappers": list(self.mappers.parameters())}

    def get_outputs(self, ray_bundle):
        return self.nerf.get_outputs(ray_bundle)

    def get_metrics_dict(self, outputs, batch):
        return {}

    def get_loss_dict(self, outputs, batch, metrics_dict=None):
        return {}

    def get_image_metrics_and_images(self, outputs, batch):
        return self.nerf.get_image_metrics_and_images(outputs, batch)

    def get_rgba_image(self, outputs, output_name: str = "rgb"):
        return self.nerf.get_rgba_image(outputs, output_name)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        nerf = {k[len("nerf."):]: v for k, v in state_dict.items() if k.startswith("nerf.")}
        mappers = {k[len("mappers."):]: v for k, v in state_dict.items() if k.startswith("mappers.")}
        self.mappers.load_state_dict(mappers, strict=strict)
        return self.nerf.load_state_dict(nerf, strict=strict)  # checks object count, loads render_codes

    # ----- the mapper objective ------------------------------------------------------------------

    def sample_codes(self, count: int, objects: list[int], generator: torch.Generator) -> Codes:
        """Codes of random objects from `objects`, or draws from the prior (`prior_fraction` of them)."""
        device = self.nerf.box_min.device
        drawn = self.nerf.sample_prior(count, generator).to(device)
        if not objects:
            return drawn
        pick = torch.tensor(objects)[torch.randint(len(objects), (count,), generator=generator)].to(device)
        known = self.nerf.object_codes(pick)
        from_prior = (torch.rand(count, generator=generator) < self.config.prior_fraction).to(device)[:, None]
        return Codes(torch.where(from_prior, drawn.z_s, known.z_s), torch.where(from_prior, drawn.z_a, known.z_a))

    def sample_targets(self, target: str, count: int, generator: torch.Generator) -> tuple[Tensor, Optional[Tensor]]:
        """Target embeddings: prompts of the library (with the neutral prompt as directional source),
        or exemplars (renders of training objects; source: the render before the edit)."""
        use_exemplars = self.exemplar_embeddings is not None and float(torch.rand(1, generator=generator)) < self.config.exemplar_fraction
        if use_exemplars:
            bank = self.exemplar_embeddings.flatten(0, 1)
            return bank[torch.randint(bank.shape[0], (count,), generator=generator)], None
        prompts = self.prompt_embeddings[target]
        chosen = prompts[torch.randint(prompts.shape[0], (count,), generator=generator)]
        return chosen, self.neutral_embedding.expand(count, -1)

    def mapper_losses(self, target: str, objects: list[int], generator: torch.Generator) -> Dict[str, Tensor]:
        count = self.config.views_per_step
        before = self.sample_codes(count, objects, generator)
        embedding, source = self.sample_targets(target, count, generator)
        after = apply_change(before, target, self.mappers.by_target(target)(embedding))
        azimuths, elevations = random_views(count, generator)
        losses = edit_losses(self.nerf, self.clip, before, after, embedding, azimuths, elevations, self.config.loss, source)
        return {f"{target}_{key}": value for key, value in losses.items()}

    def target_at(self, step: int) -> str:
        return self.config.train_mappers if self.config.train_mappers != "both" else ("shape", "appearance")[step % 2]


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
    from clipnerf_ns.runs import read_run_config

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
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        if training:
            self._load_stage1(stage1)
            self._collect_exemplars()
        else:
            show_selected_object_in_training_views(self.datamanager)

    def _load_stage1(self, stage1: TrainerConfig) -> None:
        from clipnerf_ns.runs import latest_checkpoint

        _, checkpoint = latest_checkpoint(stage1)
        state = checkpoint["pipeline"]
        model_state = {k[len("_model."):]: v for k, v in state.items() if k.startswith("_model.")}
        self.model.nerf.load_state_dict(model_state)

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
        losses = self.model.mapper_losses(self.model.target_at(step), self.model.mapper_objects, self.model.generator)
        return {}, losses, {}

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
            edited = apply_change(codes, target, model.mappers.by_target(target)(embedding))
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
