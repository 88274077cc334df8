"""The CLIP-NeRF stage-1 model: one conditional field for a whole category, per-object code tables.

Training is auto-decoding (as in EditNeRF): each training object owns a shape code and an
appearance code, learnt jointly with the field, under a Gaussian prior. Codes of anything else
(prior samples, edits, inversions) are passed in as `Codes`.

Rays carry `metadata["object_index"]` from the collection dataparser; rays without it (the
viewer's camera, camera paths of ns-render) are rendered with the model's *display* codes: a
training object chosen in the viewer or by `render_object`, or explicit codes.

Backgrounds: the collections are RGBA. Training composites each ray's ground truth and render
over the same random colour, so the field cannot bake a background in and the opacity must
match the alpha mask; evaluation and rendering use `render_background` (white by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from torch import Tensor, nn
from torch.nn import Parameter
from torchmetrics.functional import structural_similarity_index_measure

from clipnerf_ns.codes import BACKGROUNDS, Codes, load_codes, model_fingerprint, over_background, psnr
from clipnerf_ns.data.cameras import Orbit
from clipnerf_ns.errors import UserError
from clipnerf_ns.fields.conditional_field import ConditionalField, FieldSizes
from clipnerf_ns.models.adversarial import PatchDiscriminator, adversarial_losses
from clipnerf_ns.models.attribute_codes import attribute_code_loss, start_at_targets, tied_code_targets
from clipnerf_ns.models.inbetween import inbetween_opacity
from clipnerf_ns.models.meshing_config import no_sdf_field
from clipnerf_ns.models.part_head import PartHead, part_appearance
from clipnerf_ns.models.rendering import (
    grid_cell_centers,
    occupancy_from_density,
    ray_box_interval,
    render_rays,
    semi_transparency,
    surface_normals,
)

NORMALS_MIN_OPACITY = 0.5
"""Rays less opaque than this see no surface: no normal, and their depth is the background's
(ns-export keeps only points above 0.5 too)."""


@dataclass
class ClipNerfModelConfig(ModelConfig):
    """CLIP-NeRF's disentangled conditional NeRF, trained as an auto-decoder over a category."""

    _target: Type = field(default_factory=lambda: ClipNerfModel)
    enable_collider: bool = False
    """Unused: rays are clipped to the scene box by the model itself."""
    eval_num_rays_per_chunk: int = 16384
    """Rays rendered per chunk at evaluation and in the viewer."""
    field: FieldSizes = field(default_factory=FieldSizes)
    """Architecture sizes of the conditional field."""
    num_coarse_samples: int = 64
    """Stratified samples per ray inside the scene box (coarse pass)."""
    num_fine_samples: int = 32
    """Importance samples per ray drawn from the coarse weights (fine pass); 0 turns the fine pass off."""
    coarse_loss_weight: float = 1.0
    """Weight of the coarse pass's photometric loss."""
    occupancy_resolution: int = 32
    """Cells per side of each object's occupancy grid; samples in empty cells are skipped."""
    occupancy_alpha_threshold: float = 0.01
    """A cell is empty when its density would give less than this opacity over one coarse step."""
    occupancy_warmup_steps: int = 300
    """Steps before grids are first updated (everything counts as occupied until then)."""
    occupancy_update_every: int = 16
    """Steps between occupancy updates."""
    occupancy_objects_per_update: int = 8
    """Objects whose grids are refreshed at each update (round robin)."""
    occupancy_decay: float = 0.9
    """Decay of the running maximum of cell densities at each refresh of a grid."""
    code_init_std: float = 0.01
    """Standard deviation of the initial codes."""
    code_prior_weight: float = 1e-4
    """Weight of the Gaussian prior (mean squared norm) on the code tables."""
    code_attributes: Tuple[str, ...] = ()
    """Collection attributes the first shape-code dimensions are held to (`models.attribute_codes`); none: all free."""
    code_attribute_weight: float = 1.0
    """Weight of holding those dimensions to the attributes (squared distance summed over them, mean over objects)."""
    background: Literal["random", "white", "black"] = "random"
    """Training background: a random colour per ray (needs RGBA data, alpha-color none) or a fixed one."""
    render_background: Literal["white", "black"] = "white"
    """Background for evaluation, the viewer and ns-render."""
    render_object: int = 0
    """Training object shown when the viewer opens and rendered along ns-render camera paths."""
    render_codes: Optional[Path] = None
    """A codes file (from `clipnerf edit` or `clipnerf invert`) shown instead of `render_object`."""
    adversarial: bool = False
    """Add the GRAF patch adversarial loss (patch discriminator, non-saturating loss, R1)."""
    adversarial_weight: float = 0.05
    """Weight of the generator's adversarial loss."""
    r1_weight: float = 10.0
    """Weight of the R1 gradient penalty on real patches."""
    patch_size: int = 8
    """Side of the patches the discriminator sees (rays are then sampled as patches)."""
    fake_patches: int = 4
    """Patches per batch re-rendered with codes drawn from the prior as the discriminator's fakes."""
    discriminator_width: int = 64
    """Channels of the patch discriminator."""
    inbetween_haze_weight: float = 0.0
    """Weight of the in-between haze term (0: off): rays of codes between learnt ones or drawn from the prior pay 4a(1-a)."""
    inbetween_rays: int = 256
    """Rays per batch rendered with in-between codes for that term."""
    inbetween_start_step: int = 2000
    """Step the term starts at: an untrained field is fog everywhere, which the term alone would empty for good."""
    inbetween_reach: float = 1.0
    """How far past the learnt codes the term's codes go (1: segments between them, prior draws; see `models.inbetween`)."""

    def problems(self) -> list[str]:
        """What is impossible about this configuration (empty when it is usable)."""
        found = self.field.problems()
        if self.num_coarse_samples < 2:
            found.append(f"num_coarse_samples must be at least 2, got {self.num_coarse_samples}")
        if self.num_fine_samples < 0:
            found.append(f"num_fine_samples must be at least 0, got {self.num_fine_samples}")
        if self.occupancy_resolution < 2:
            found.append(f"occupancy_resolution must be at least 2, got {self.occupancy_resolution}")
        if not 0.0 < self.occupancy_alpha_threshold < 1.0:
            found.append(f"occupancy_alpha_threshold must be in (0, 1), got {self.occupancy_alpha_threshold}")
        if min(self.occupancy_update_every, self.occupancy_objects_per_update, self.inbetween_rays) < 1:
            found.append("occupancy_update_every, occupancy_objects_per_update and inbetween_rays must be at least 1")
        if min(self.inbetween_haze_weight, self.code_attribute_weight) < 0 or self.inbetween_reach <= 0:
            found.append("inbetween_haze_weight and code_attribute_weight must be at least 0, inbetween_reach above 0")
        if self.adversarial and (self.patch_size < 4 or self.patch_size & (self.patch_size - 1)):
            found.append(f"patch_size must be a power of two of at least 4, got {self.patch_size}")
        return found

    sdf_field = property(no_sdf_field)


class ClipNerfModel(Model):
    """Conditional NeRF over a category; see the module docstring."""

    config: ClipNerfModelConfig
    part_head: Optional[PartHead] = None  # which part each point is on, for part edits (`attach_part_head`)

    def attach_part_head(self, head: PartHead) -> None:  # not a submodule: it ships in its own file, not in checkpoints
        object.__setattr__(self, "part_head", head.to(self.box_min.device).eval())

    def populate_modules(self):
        super().populate_modules()
        problems = self.config.problems()
        if problems:
            raise UserError("impossible clip-nerf configuration: " + "; ".join(problems))
        self.object_ids: list[str] = list(self.kwargs["metadata"].get("object_ids", []))
        if not self.object_ids:
            raise UserError("clip-nerf needs the clipnerf-collection dataparser (no object ids in the data)")
        self.category: str = self.kwargs["metadata"].get("category", "")
        """The collection's category ("chairs", "cars"...; "" when it names none)."""
        self.orbit: Orbit = self.kwargs["metadata"].get("orbit") or Orbit()
        """Where the collection's cameras sit (distance, field of view): our views of the model sit there too."""
        count = len(self.object_ids)
        sizes = self.config.field
        self.field = ConditionalField(sizes)
        self.shape_codes = nn.Embedding(count, sizes.shape_dim)
        self.appearance_codes = nn.Embedding(count, sizes.appearance_dim)
        nn.init.normal_(self.shape_codes.weight, std=self.config.code_init_std)
        nn.init.normal_(self.appearance_codes.weight, std=self.config.code_init_std)
        targets, mask, self.code_attribute_labels = tied_code_targets(
            self.kwargs["metadata"].get("attributes") or [{}] * count, self.config.code_attributes, sizes.shape_dim)
        self.register_buffer("code_targets", targets, persistent=False)  # None when no dimension is tied
        self.register_buffer("code_target_mask", mask, persistent=False)
        start_at_targets(self.shape_codes.weight, targets, mask)

        res = self.config.occupancy_resolution
        self.register_buffer("box_min", self.scene_box.aabb[0].float().clone(), persistent=False)
        self.register_buffer("box_max", self.scene_box.aabb[1].float().clone(), persistent=False)
        self.register_buffer("occupancy_density", torch.zeros(count, res, res, res))
        self.register_buffer("occupancy", torch.ones(count, res, res, res, dtype=torch.bool))
        self.register_buffer("occupancy_refreshes", torch.zeros(count, dtype=torch.long))
        config = self.config
        self.discriminator = PatchDiscriminator(config.patch_size, config.discriminator_width) if config.adversarial else None
        self.used_outside_forward = ("discriminator",) if self.discriminator is not None else ()
        """Submodules whose losses are taken after the forward (several ranks average them apart: `ranks.py`)."""
        self.training_step = 0  # the trainer's, set before each training iteration
        if not 0 <= self.config.render_object < count:
            raise UserError(f"render_object {self.config.render_object} is out of range: the run has {count} objects")
        # The object picked (the viewer's picker, `render_object`, `render_codes`) and what is on
        # screen (the picked object, or an edit of it) wherever rays carry no object index.
        self._picked: Union[int, Codes] = self.config.render_object
        self._shown: tuple[Union[int, Codes], Optional[Tensor]] = (self.config.render_object, None)

    # ----- codes -----------------------------------------------------------------------------

    @property
    def num_objects(self) -> int:
        return self.shape_codes.num_embeddings

    def object_codes(self, index: Int[Tensor, "*batch"]) -> Codes:
        return Codes(self.shape_codes(index), self.appearance_codes(index))

    def code_prior(self) -> tuple[Codes, Codes]:
        """Mean and standard deviation of the learnt codes (a diagonal Gaussian per code)."""
        z_s, z_a = self.shape_codes.weight.detach(), self.appearance_codes.weight.detach()
        if self.num_objects < 2:
            return Codes(z_s.mean(0), z_a.mean(0)), Codes(torch.ones_like(z_s[0]), torch.ones_like(z_a[0]))
        return Codes(z_s.mean(0), z_a.mean(0)), Codes(z_s.std(0), z_a.std(0))

    def sample_prior(self, count: int, generator: Optional[torch.Generator] = None) -> Codes:
        """`count` codes drawn from the code prior (a CPU generator makes the draws reproducible)."""
        mean, std = self.code_prior()

        def draw(m: Tensor, s: Tensor) -> Tensor:
            return m + s * torch.randn(count, m.shape[0], generator=generator).to(m.device)

        return Codes(draw(mean.z_s, std.z_s), draw(mean.z_a, std.z_a))

    @torch.no_grad()
    def occupancy_for_codes(self, z_s: Float[Tensor, " d_shape"]) -> Bool[Tensor, "1 r r r"]:
        """Occupancy grid of one shape code (cell densities against the threshold, dilated)."""
        return occupancy_from_density(self._cell_density(z_s)[None], self._density_threshold())

    def _cell_density(self, z_s: Float[Tensor, " d_shape"], jitter_seed: Optional[int] = None) -> Float[Tensor, "r r r"]:
        """Density at the cell centres, or jittered within the cells by a draw of `jitter_seed` (a pure
        function of the step and object: under DDP every rank draws the same, so the grids agree)."""
        res = self.config.occupancy_resolution
        points = grid_cell_centers(res, device=z_s.device)
        if jitter_seed is not None:
            draw = torch.rand(points.shape, generator=torch.Generator().manual_seed(jitter_seed))
            points = points + (draw.to(points.device) - 0.5) * (2.0 / res)
        sigma, _ = self.field.density(points, z_s[None])
        return sigma.reshape(res, res, res)

    def _density_threshold(self) -> float:
        diagonal = float(torch.linalg.norm(self.box_max - self.box_min))
        step = diagonal / self.config.num_coarse_samples
        return -float(torch.log1p(torch.tensor(-self.config.occupancy_alpha_threshold))) / step

    @torch.no_grad()
    def refresh_occupancy(self, step: int) -> None:
        """Re-evaluate the grids of a few objects (round robin) at jittered cell centres."""
        if step < self.config.occupancy_warmup_steps:
            return
        count = min(self.config.occupancy_objects_per_update, self.num_objects)
        turn = (step - self.config.occupancy_warmup_steps) // self.config.occupancy_update_every
        ids = [(turn * count + k) % self.num_objects for k in range(count)]
        for i in ids:
            fresh = self._cell_density(self.shape_codes.weight[i], jitter_seed=step * self.num_objects + i)
            old = self.occupancy_density[i] * self.config.occupancy_decay
            self.occupancy_density[i] = fresh if self.occupancy_refreshes[i] == 0 else torch.maximum(old, fresh)
            self.occupancy_refreshes[i] += 1
        self.occupancy[ids] = occupancy_from_density(self.occupancy_density[ids], self._density_threshold())

    # ----- display codes (viewer, ns-render camera paths) ---------------------------------------

    def set_display(self, target: Union[int, Codes]) -> None:
        """Show a training object (by index) or explicit codes wherever rays carry no object index."""
        if isinstance(target, int):
            if not 0 <= target < self.num_objects:
                raise UserError(f"object index {target} is out of range: the model has {self.num_objects} objects")
            self._shown = (target, None)
        else:
            codes = target.to(self.box_min.device).detach()
            self._shown = (codes, self.occupancy_for_codes(codes.z_s))  # one assignment: the render thread reads it

    def display_codes(self) -> tuple[Codes, Bool[Tensor, "1 r r r"]]:
        shown, grid = self._shown
        if isinstance(shown, int):
            index = torch.tensor(shown, device=self.box_min.device)
            return self.object_codes(index).detach(), self.occupancy[shown][None]
        return shown, grid

    def pick(self, target: Union[int, Codes]) -> None:
        """Select the object to show and edit (a training object's index, or codes)."""
        self.set_display(target)
        self._picked = target

    def show_picked(self) -> None:
        """Show the picked object without edits."""
        self.set_display(self._picked)

    def read_codes_file(self, path: Path) -> Codes:
        """The codes of a codes file made for this model's weights (one-line errors otherwise)."""
        sizes = self.config.field
        codes, _ = load_codes(path, model_fingerprint(self.field), sizes.shape_dim, sizes.appearance_dim)
        return codes

    # ----- nerfstudio Model interface -----------------------------------------------------------

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = {"fields": list(self.field.parameters()), "codes": [self.shape_codes.weight, self.appearance_codes.weight]}
        if self.discriminator is not None:
            groups["discriminator"] = list(self.discriminator.parameters())
        return groups

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        before, after = [TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], [TrainingCallbackLocation.AFTER_TRAIN_ITERATION]
        return [
            TrainingCallback(after, self.refresh_occupancy, update_every_num_iters=self.config.occupancy_update_every),
            TrainingCallback(before, lambda step: setattr(self, "training_step", step)),
        ]

    def render_rays(
        self,
        origins: Float[Tensor, "rays 3"],
        directions: Float[Tensor, "rays 3"],
        codes: Codes,
        grids: Bool[Tensor, "grids r r r"],
        grid_index: Int[Tensor, " rays"],
        background: Float[Tensor, "rays 3"],
        fine: bool = True,
    ) -> Dict[str, Tensor]:
        """Render rays with per-ray codes (`codes.z_s` (rays, d_shape), `codes.z_a` (rays, d_app)), or
        codes shared by all rays (leading size 1); `fine=False` skips the fine pass."""

        def per_point(code: Tensor, ray: Tensor) -> Tensor:
            return code if code.shape[0] == 1 else code[ray]

        def point_fn(points: Tensor, ray: Tensor) -> tuple[Tensor, Tensor]:
            z_s, z_a = per_point(codes.z_s, ray), per_point(codes.z_a, ray)
            if codes.part_changes is not None:
                z_a = part_appearance(self.part_head, points, z_s, z_a, per_point(codes.part_changes, ray))
            return self.field(points, directions[ray], z_s, z_a)

        return render_rays(
            point_fn, origins, directions, self.box_min, self.box_max, grids, grid_index,
            self.config.num_coarse_samples, self.config.num_fine_samples if fine else 0, background, jitter=self.training,
        )

    @torch.no_grad()
    def render_view(self, camera: Cameras, codes: Codes, grid: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Render one camera with explicit codes of one object (`z_s` (d_shape,), `z_a` (d_app,)).

        `grid` is the codes' occupancy grid (`occupancy_for_codes(z_s)`, computed here when not
        given: pass it when rendering many views of the same codes). Returns images of shape
        (h, w, c) on the camera's device, over `render_background`.
        """
        codes = codes.to(self.box_min.device).detach()
        grid = self.occupancy_for_codes(codes.z_s) if grid is None else grid
        bundle = camera.generate_rays(camera_indices=0, keep_shape=True)
        height, width = bundle.shape
        origins = bundle.origins.reshape(-1, 3).to(self.box_min.device)
        directions = bundle.directions.reshape(-1, 3).to(self.box_min.device)
        chunk = self.config.eval_num_rays_per_chunk
        background = self.box_min.new_tensor(BACKGROUNDS[self.config.render_background])
        shared = codes.shared()
        pieces: Dict[str, list] = {}
        for start in range(0, origins.shape[0], chunk):
            rays = origins[start : start + chunk].shape[0]
            out = self.render_rays(
                origins[start : start + chunk], directions[start : start + chunk], shared, grid,
                torch.zeros(rays, dtype=torch.long, device=origins.device), background.expand(rays, 3),
            )
            for key, value in out.items():
                pieces.setdefault(key, []).append(value)
        return {key: torch.cat(value).reshape(height, width, -1).to(camera.device) for key, value in pieces.items()}

    def _background(self, rays: int, patch_rays: int) -> Tensor:
        if not self.training or self.config.background != "random":
            colour = BACKGROUNDS[self.config.render_background if not self.training else self.config.background]
            return self.box_min.new_tensor(colour).expand(rays, 3)
        if patch_rays > 1:  # one colour per patch, so patches look like images to the discriminator
            return torch.rand(rays // patch_rays, 1, 3, device=self.box_min.device).expand(-1, patch_rays, -1).reshape(rays, 3)
        return torch.rand(rays, 3, device=self.box_min.device)

    def get_outputs(self, ray_bundle: Union[RayBundle, Cameras]) -> Dict[str, Union[Tensor, List]]:
        assert isinstance(ray_bundle, RayBundle)
        origins = ray_bundle.origins.reshape(-1, 3)
        directions = ray_bundle.directions.reshape(-1, 3)
        rays = origins.shape[0]
        patch_rays = self.config.patch_size**2 if self.discriminator is not None else 1
        background = self._background(rays, patch_rays)
        metadata = ray_bundle.metadata or {}
        if "object_index" in metadata:
            index = metadata["object_index"].reshape(-1).long()
            codes, grids, grid_index = self.object_codes(index), self.occupancy, index
        else:
            display, grid = self.display_codes()
            codes = display.shared()
            grids, grid_index = grid, torch.zeros(rays, dtype=torch.long, device=origins.device)
        outputs = self.render_rays(origins, directions, codes, grids, grid_index, background)
        if not self.training:  # for the viewer and ns-export (its point clouds and poisson meshes take normals)
            seen = outputs["accumulation"].reshape(-1) > NORMALS_MIN_OPACITY
            outputs["normals"] = surface_normals(
                lambda points, ray: self.field.density(points, codes.z_s if codes.z_s.shape[0] == 1 else codes.z_s[ray])[0],
                origins, directions, outputs["depth"].reshape(-1), seen, self.box_min, self.box_max)
            # Rays that see no surface end on a background a box diagonal beyond the scene box:
            # ns-export tsdf carves free space along them up to there (depth 0 would leave it
            # unknown, and a depth on the box's side would put a surface there).
            _, far, _ = ray_box_interval(origins, directions, self.box_min, self.box_max)
            background_depth = far + torch.linalg.norm(self.box_max - self.box_min)
            outputs["depth"] = torch.where(outputs["accumulation"] > NORMALS_MIN_OPACITY, outputs["depth"], background_depth)
        if self.training:
            outputs["background"] = background
            if self.discriminator is not None:
                outputs["rgb_fake"] = self._render_fake_patches(origins, directions, background)
            if self.config.inbetween_haze_weight > 0 and self.training_step >= self.config.inbetween_start_step:
                outputs["accumulation_inbetween"] = inbetween_opacity(self, origins, directions, background)
        return outputs

    def get_rgba_image(self, outputs: Dict[str, Tensor], output_name: str = "rgb") -> Tensor:
        """The object's own colour (the background taken out again) and its opacity, as nerfstudio's
        exporters and ns-render's RGBA images ask of a model."""
        rgb = outputs[output_name]
        accumulation = outputs[output_name.replace("rgb", "accumulation")].reshape(*rgb.shape[:-1], 1)
        background = self._rendered_background(outputs).reshape(rgb.shape)
        straight = (rgb - (1.0 - accumulation) * background) / accumulation.clamp(min=1e-6)
        return torch.cat([straight.clamp(0.0, 1.0), accumulation], dim=-1)

    def _render_new_codes(self, origins: Tensor, directions: Tensor, codes: Codes, background: Tensor, fine: bool = True):
        """Render rays with per-ray codes that have no occupancy grid (prior draws, in-between codes)."""
        grids = torch.ones(1, 2, 2, 2, dtype=torch.bool, device=origins.device)
        index = torch.zeros(origins.shape[0], dtype=torch.long, device=origins.device)
        return self.render_rays(origins, directions, codes.to(origins.device), grids, index, background, fine)

    def _render_fake_patches(self, origins: Tensor, directions: Tensor, background: Tensor) -> Tensor:
        """The first `fake_patches` patches of the batch, rendered with codes drawn from the prior."""
        patch_rays = self.config.patch_size**2
        patches = min(self.config.fake_patches, origins.shape[0] // patch_rays)
        rays = patches * patch_rays
        drawn = self.sample_prior(patches)
        drawn = Codes(drawn.z_s.repeat_interleave(patch_rays, 0), drawn.z_a.repeat_interleave(patch_rays, 0))
        fake = self._render_new_codes(origins[:rays], directions[:rays], drawn, background[:rays])["rgb"]
        return fake.reshape(patches, self.config.patch_size, self.config.patch_size, 3)

    def _target(self, batch: Dict[str, Tensor], background: Tensor) -> Tensor:
        image = batch["image"].to(background.device)
        if image.shape[-1] == 3 and self.training and self.config.background == "random":
            raise UserError(
                "a random training background needs RGBA images: pass "
                "--pipeline.datamanager.dataparser.alpha-color none (or choose a fixed --pipeline.model.background)"
            )
        return over_background(image.reshape(-1, image.shape[-1]), background)

    def _rendered_background(self, outputs: Dict[str, Tensor]) -> Tensor:
        """The background the rays were composited on (training), or the render background (evaluation)."""
        if "background" in outputs:
            return outputs["background"]
        colour = outputs["rgb"].new_tensor(BACKGROUNDS[self.config.render_background])
        return colour.expand(outputs["rgb"].reshape(-1, 3).shape[0], 3)

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        target = self._target(batch, self._rendered_background(outputs))
        return {"psnr": psnr(outputs["rgb"].detach(), target)}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        target = self._target(batch, self._rendered_background(outputs))
        losses = {
            "rgb_loss": F.mse_loss(outputs["rgb"], target),
            "rgb_loss_coarse": self.config.coarse_loss_weight * F.mse_loss(outputs["rgb_coarse"], target),
            "code_prior": self.config.code_prior_weight
            * (self.shape_codes.weight.pow(2).sum(-1).mean() + self.appearance_codes.weight.pow(2).sum(-1).mean()),
        }
        if self.discriminator is not None and "rgb_fake" in outputs:  # training batches only
            fake = outputs["rgb_fake"]
            real = target[: fake.shape[0] * self.config.patch_size**2].reshape(fake.shape)
            gan = adversarial_losses(self.discriminator, real, fake, self.config.r1_weight)
            losses.update(adversarial_discriminator=gan["discriminator"], adversarial_r1=gan["r1"],
                          adversarial_generator=self.config.adversarial_weight * gan["generator"])
        if self.code_targets is not None:
            losses["code_attributes"] = self.config.code_attribute_weight * attribute_code_loss(
                self.shape_codes.weight, self.code_targets, self.code_target_mask)
        if "accumulation_inbetween" in outputs:
            losses["inbetween_haze"] = self.config.inbetween_haze_weight * semi_transparency(outputs["accumulation_inbetween"]).mean()
        return losses

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> tuple[Dict[str, float], Dict[str, Tensor]]:
        prediction = outputs["rgb"]
        background = prediction.new_tensor(BACKGROUNDS[self.config.render_background])
        target = over_background(batch["image"].to(prediction.device), background)
        to_nchw = lambda image: image.permute(2, 0, 1)[None]  # noqa: E731
        metrics = {
            "psnr": float(psnr(prediction, target)),
            "ssim": float(structural_similarity_index_measure(to_nchw(prediction), to_nchw(target), data_range=1.0)),
            "psnr_coarse": float(psnr(outputs["rgb_coarse"], target)),
        }
        images = {
            "img": torch.cat([target, prediction], dim=1),
            "accumulation": colormaps.apply_colormap(outputs["accumulation"]),
            "depth": colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"]),
        }
        return metrics, images

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        key = "shape_codes.weight"
        if key in state_dict and state_dict[key].shape[0] != self.num_objects:
            raise UserError(
                f"the checkpoint has codes for {state_dict[key].shape[0]} objects but the data has "
                f"{self.num_objects}: load it with the collection (and --objects / --max-objects) it was trained on"
            )
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        if self.config.render_codes is not None:  # codes are checked against the weights just loaded
            self.pick(self.read_codes_file(self.config.render_codes))
        return result
