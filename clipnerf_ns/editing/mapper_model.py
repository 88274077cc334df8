"""The stage-2 nerfstudio Model of `ns-train clip-nerf-mappers`: the frozen stage-1 NeRF, the
frozen CLIP, and the shape and appearance code mappers being trained, with the mapper objective
(see `pipelines.mapper_pipeline`, which drives it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Dict, List, Literal, Optional, Type

import torch
from nerfstudio.models.base_model import Model, ModelConfig
from torch import Tensor
from torch.nn import Parameter

from clipnerf_ns.checkpoints import with_prefix
from clipnerf_ns.clip.config import ClipConfig
from clipnerf_ns.codes import Codes, prior_units
from clipnerf_ns.data.cameras import VIEW_DEG
from clipnerf_ns.editing.edit import EditLossConfig, apply_change, edit_losses, random_views, render_views
from clipnerf_ns.editing.mappers import Mappers
from clipnerf_ns.editing.prompts import load_prompt_library
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.attribute_codes import attribute_groups
from clipnerf_ns.models.clip_nerf import ClipNerfModel, ClipNerfModelConfig
from clipnerf_ns.models.meshing_config import no_sdf_field
from clipnerf_ns.validation import Bounds, check_numbers


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
    shape_mapper_sees_code: bool = False
    """Give the shape mapper the object's shape code as well as the CLIP embedding, so that one
    prompt moves each object its own way (the paper's mapper sees only the embedding)."""
    appearance_mapper_sees_code: bool = False
    """Give the appearance mapper the object's appearance code as well as the CLIP embedding, so
    that one prompt changes each object's colours its own way (one change for every chair leaves a
    tint of each chair's own hue under "a gray chair")."""
    shape_mapper: Literal["trained", "read"] = "trained"
    """`trained`: the paper's shape mapper, an MLP trained through renders of its edits. `read`: no
    training; fitted once from the CLIP's embeddings of views of the mapper objects (a ridge
    regression from their learnt codes; `read_views`), it moves a code along the prompt's direction in code
    space until its predicted score reaches `read_percentile` (see `editing.mappers`). Only the
    appearance mapper trains then."""
    read_percentile: Annotated[float, Bounds(50, 100)] = 99.0
    """How far the read shape mapper moves an object: until its predicted CLIP score for the prompt
    reaches this percentile of the mapper objects' scores (objects already there do not move)."""
    read_ridge: Annotated[float, Bounds(0, 1e6)] = 1.0
    """Ridge weight of the read shape mapper's regression (codes in prior units)."""
    read_hold: Annotated[float, Bounds(0, 1e6)] = 5.0
    """How firmly a read shape edit holds the predicted CLIP scores of the library's other shape
    prompts, so that it changes what the prompt asks for and less else (0: not at all; see
    `editing.mappers.held_step`)."""
    read_hold_similarity: Annotated[float, Bounds(0, 1)] = 0.5
    """Library prompts whose code-space direction has this covariance cosine or more with the
    edit's (its synonyms, its opposite) are not held."""
    read_clamp: bool = False
    """Clamp each dimension of a read shape edit's code into the range the mapper objects' codes
    span, so that no attribute goes past what some object has (measured on attribute-tied shape
    codes, `--pipeline.model.code-attributes` of stage 1: README, "Sixth lever")."""
    read_holders: Annotated[float, Bounds(0, 1)] = 0.0
    """Before its step, a read shape edit first takes what this fraction of the mapper objects, those
    with the highest predicted scores for the prompt, all share (arms come with a back: a stool asked
    for arms gets one), keeping what they vary in; a tied choice (leg style) ends on a holder's value,
    never on no base at all (`editing.mappers.holders_step`). 0: no such step."""
    read_shared: Annotated[float, Bounds(1e-6, 1e6)] = 0.1
    """With `read_holders`: a direction along which the holders' codes vary by less than this
    (variance, prior units) counts as shared."""
    read_named: Annotated[float, Bounds(0, 1)] = 0.6
    """With `read_holders` and a stage 1 whose codes are tied to attributes: an attribute counts as
    named by the prompt when its holders' mean moves at least this share of the most moved
    attribute's shift; every mapper object that agrees with the holders on the named attributes then
    holds the prompt (office armchairs too), and the edit keeps the object's own values of the others
    (an armchair keeps its back height). 0: the top scorers alone hold it and nothing is kept."""
    read_holders_rank: Literal["prompt", "direction"] = "prompt"
    """With `read_holders`: what ranks the mapper objects for a text prompt. "prompt": the predicted
    similarity to the prompt itself, so that the holders of "a chair with three legs" are chairs;
    "direction": to the prompt minus the neutral one (the step's direction), whose top scorers for
    "three legs" or "a reclined back" are stools, which the edits then followed (README, "Eleventh
    lever"; the shipped mappers were measured so until the night of 6 December). Exemplar images rank by direction."""
    read_clean: Annotated[int, Bounds(0, 64)] = 8
    """With a stage 1 whose codes are tied to attributes: an edit's free dimensions are also tried half
    way to those of this many mapper objects nearest it on the tied ones, and the editor keeps the
    variant whose small render (`editing.edit.CLEAN_VIEW`) is least hazy (README, "Tenth lever"). 0: the
    read step's code as it is."""
    read_views: Literal["training", "rendered"] = "rendered"
    """What the read shape mapper's regression reads: the CLIP embeddings of each mapper object's
    first `exemplar_views` training views, or of five renders of its learnt code around the orbit
    (what the code decodes to; about a second per object on CPU)."""
    max_prior_distance: Annotated[Optional[float], Bounds(0.01, 100)] = None
    """Pull edited shape codes back to at most this many prior deviations (root mean square over the
    code) from the code prior's mean, or the object's own distance if larger; None: no bound. The
    shape space fogs with the distance from the mean (learnt codes sit near 1)."""
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
        check_numbers(self.config)  # the ranges of single options are their `Bounds`
        if self.config.shape_mapper == "read" and (self.config.train_mappers == "shape" or self.config.shape_mapper_sees_code):
            raise UserError("the read shape mapper is not trained and always sees the code: leave --pipeline.model.train-mappers "
                            "and --pipeline.model.shape-mapper-sees-code at their defaults with --pipeline.model.shape-mapper read")
        self.nerf: ClipNerfModel = self.config.nerf.setup(
            scene_box=self.scene_box, num_train_data=self.num_train_data, **self.kwargs
        )
        self.nerf.requires_grad_(False)
        self.nerf.eval()
        device = self.kwargs.get("device", "cpu")
        from clipnerf_ns.clip.encoder import ClipEncoder  # deferred: open_clip is slow to import, and loads only here

        # CLIP is frozen and never part of the checkpoint, so it is kept out of the module tree.
        self.__dict__["clip"] = ClipEncoder.load(self.config.clip, device=device)
        sizes = self.config.nerf.field
        count = self.nerf.num_objects
        mapper_objects = max(1, count - int(round(count * self.config.heldout_objects)))
        self.library = load_prompt_library(self.config.prompts, self.nerf.category)
        self.mapper_objects = list(range(mapper_objects))
        self.heldout = list(range(mapper_objects, count))
        read = self.config.shape_mapper == "read"
        if read and mapper_objects < 2:  # refused before the stage renders or embeds anything
            raise UserError("the read shape mapper needs at least 2 mapper objects (stage 1 has too few objects)")
        self.mappers = Mappers(self.clip.embed_dim, sizes.shape_dim, sizes.appearance_dim, self.config.hidden_width,
                               self.config.shape_mapper_sees_code, self.config.max_prior_distance,
                               self._read_options(mapper_objects) if read else None, self.config.appearance_mapper_sees_code)
        self.category = self.nerf.category
        with torch.no_grad():
            self.prompt_embeddings = {
                target: self.clip.encode_text(list(self.library.for_target(target))) for target in ("shape", "appearance")
            }
            self.neutral_embedding = self.clip.encode_text([self.library.neutral])
        self.exemplar_embeddings: Optional[Tensor] = None  # (objects, views, d_clip), set by the pipeline
        self.generator = torch.Generator().manual_seed(self.config.seed)

    def _read_options(self, mapper_objects: int) -> dict:
        """The read shape mapper's options (`editing.mappers.ReadShapeMapper`)."""
        return {"objects": mapper_objects, "percentile": self.config.read_percentile,
                "held_prompts": len(self.library.shape), "hold": self.config.read_hold,
                "similarity": self.config.read_hold_similarity, "clamp": self.config.read_clamp,
                "holders": self.config.read_holders or None, "shared": self.config.read_shared,
                "attributes": attribute_groups(self.nerf.code_attribute_labels), "named": self.config.read_named or None,
                "clean": self.config.read_clean, "holders_rank": self.config.read_holders_rank}

    def train(self, mode: bool = True):
        super().train(mode)
        self.nerf.eval()  # frozen: no jittered samples, no training-only outputs
        return self

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"mappers": list(self.mappers.parameters())}

    def forward(self, ray_bundle=None, objective: Optional[tuple] = None):
        """nerfstudio's forward (the NeRF's outputs for `ray_bundle`: the viewer renders with it), or
        given `objective` = (target, objects, generator) the mapper objective: the pipeline's training
        step calls it through its `_model`, so that under DDP the mappers' gradients are averaged."""
        if objective is not None:
            return self.mapper_losses(*objective)
        return super().forward(ray_bundle)

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
        self.mappers.load_state_dict(with_prefix(state_dict, "mappers."), strict=strict)
        return self.nerf.load_state_dict(with_prefix(state_dict, "nerf."), strict=strict)  # checks object count, loads render_codes

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
        after = apply_change(before, target, self.mappers.change(target, embedding, before, self.nerf.code_prior()))
        azimuths, elevations = random_views(count, generator)
        losses = edit_losses(self.nerf, self.clip, before, after, embedding, azimuths, elevations, self.config.loss, source)
        return {f"{target}_{key}": value for key, value in losses.items()}

    def target_at(self, step: int) -> str:
        if self.mappers.shape_is_read:
            return "appearance"  # the shape mapper is read, not trained
        return self.config.train_mappers if self.config.train_mappers != "both" else ("shape", "appearance")[step % 2]

    @torch.no_grad()
    def fit_read_shape_mapper(self) -> None:
        """Fit the read shape mapper to the mapper objects' codes and the CLIP embeddings of renders
        of them, or of their training views (`exemplar_embeddings`, set by the pipeline first)."""
        mean, std = self.nerf.code_prior()
        objects = torch.tensor(self.mapper_objects)
        units = prior_units(mean, std, self.nerf.object_codes(objects.to(mean.z_s.device)))[0]
        if self.config.read_views == "rendered":
            from rich.progress import track

            views = torch.stack([self.rendered_embedding(i) for i in track(self.mapper_objects, "rendering the objects to read")])
        else:
            views = self.exemplar_embeddings[objects].mean(1)
        self.mappers.shape.fit(units, views, self.neutral_embedding[0], self.config.read_ridge, self.prompt_embeddings["shape"])

    def rendered_embedding(self, index: int, count: int = 5) -> Tensor:
        """The mean CLIP embedding of `count` renders of object `index`'s learnt code, from the
        commands' view direction and evenly round the orbit from it."""
        codes = self.nerf.object_codes(torch.full((count,), index, device=self.nerf.box_min.device))
        azimuths = VIEW_DEG[0] + torch.arange(count) * 360.0 / count
        size = self.config.loss.resolution or self.clip.image_size
        images = render_views(self.nerf, codes, azimuths, torch.full((count,), VIEW_DEG[1]), size,
                              self.clip.frame_extent(self.category))
        return self.clip.encode_image(images).mean(0)
