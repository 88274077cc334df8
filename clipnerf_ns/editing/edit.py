"""`Edit` (what the user asks for) -> `Codes` (what the model renders): the one editing API.

The command line (`clipnerf edit`), ns-render configs and the viewer's editor all go through
`Editor.changes` (the code changes at strength 1) and `with_changes` (`Editor.apply` is both).
Two modes:

- `mapper`: one forward pass through the trained code mappers (paper section 3.2);
- `optimize`: optimise the code change of this one object against the prompt or exemplar for a
  few steps, with no mapper (for prompts outside the mappers' library, or single scenes).

A combined edit (`target="both"`) changes the shape code first, then the appearance code. A prompt
that names one part of the category (the prompt library's part words: "a chair with a red seat")
changes the appearance of that part alone, where the run has a part head (`models.part_head`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from clipnerf_ns.codes import BACKGROUNDS, Codes, over_background
from clipnerf_ns.data.cameras import make_cameras, orbit_camera, orbit_pose
from clipnerf_ns.data.images import frame_on_object, pad_to_fill, read_rgba
from clipnerf_ns.data.photos import has_alpha, threshold_mask
from clipnerf_ns.data.render import FRAMING_MARGIN, framing_corners, framing_intrinsics
from clipnerf_ns.editing.losses import clip_distance, code_change_penalty, directional_clip_distance
from clipnerf_ns.editing.mappers import Mappers
from clipnerf_ns.editing.prompts import PromptLibrary, load_prompt_library
from clipnerf_ns.errors import UserError
from clipnerf_ns.eval.metrics import haze
from clipnerf_ns.models.clip_nerf import ClipNerfModel
from clipnerf_ns.models.rendering import occupied_bounds, semi_transparency

Target = Literal["shape", "appearance", "both"]
TARGETS = ("shape", "appearance", "both")
# Cameras for CLIP views: on the collection's orbit, at elevations where an object is seen from
# the side and a little above, framed on the object as the CLIP's training views are.
ELEVATION_RANGE = (10.0, 40.0)


@dataclass(frozen=True)
class Edit:
    """One edit: a prompt or an exemplar image, which code(s) it may change, and how strongly."""

    prompt: Optional[str] = None
    exemplar: Optional[Float[Tensor, "h w 3"]] = None
    target: Target = "both"
    strength: float = 1.0
    mode: Literal["mapper", "optimize"] = "mapper"
    steps: int = 40
    seed: int = 0
    part: Optional[str] = None
    """The part an appearance change is kept to (a part of the run's part head); None: the part the
    prompt names, if it names one; "whole": the whole object."""

    def check(self) -> None:
        if (self.prompt is None) == (self.exemplar is None):
            raise UserError("an edit needs exactly one of a prompt or an exemplar image")
        if self.prompt is not None and not self.prompt.strip():
            raise UserError("empty prompt: describe the edit, e.g. 'a red chair'")
        if self.target not in TARGETS:
            raise UserError(f"unknown edit target {self.target!r}; expected one of {', '.join(TARGETS)}")
        if self.mode not in ("mapper", "optimize"):
            raise UserError(f"unknown edit mode {self.mode!r}; expected mapper or optimize")
        if self.mode == "optimize" and self.steps < 1:
            raise UserError(f"optimize mode needs at least one step, got {self.steps}")

    def describe(self) -> dict:
        return {
            "prompt": self.prompt, "exemplar": self.exemplar is not None, "target": self.target,
            "strength": self.strength, "mode": self.mode, "steps": self.steps if self.mode == "optimize" else 0,
            "part": self.part,
        }


@dataclass
class EditLossConfig:
    """The editing objective, shared by mapper training and optimize mode."""

    clip_weight: float = 1.0
    """Weight of the CLIP distance between the edited render and the prompt (or exemplar)."""
    directional: bool = False
    """Use the directional CLIP loss: the render's embedding should move the way the prompt differs
    from the category's neutral prompt (for exemplars: from the render before the edit)."""
    code_change_weight: float = 0.1
    """Weight of the mean squared code change (keeps the edit close to the object)."""
    haze_weight: float = 0.0
    """Weight of a penalty on semi-transparent pixels of the edited renders (mean of 4 a (1 - a)
    over pixels of opacity a: 1 at a = 0.5, 0 where a pixel is empty or opaque), so that shape
    edits land on codes that decode to solid objects, not fog. 0: off."""
    adversarial_weight: float = 0.0
    """Weight of the stage-1 discriminator's non-saturating loss on edited renders (when it has one)."""
    resolution: Optional[int] = None
    """Side of the views rendered for CLIP (pixels); None: the CLIP's own input size (renders at
    another size are resized to it)."""


def read_exemplar(path: Path) -> Float[Tensor, "s s 3"]:
    """An exemplar image as RGB in [0, 1] (RGBA composited over white), framed on its object as the
    CLIP's views are: the object is found by its alpha, else as what differs from the border colour."""
    rgba = read_rgba(path, "exemplar image")
    x = torch.from_numpy(rgba.astype(np.float32) / 255.0)
    rgb = over_background(x, torch.ones(3))
    mask = x[..., 3] if has_alpha(rgba) else threshold_mask(rgb, 0.1)
    return frame_on_object(rgb, mask, FRAMING_MARGIN)


def random_views(count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Azimuths (uniform) and elevations (in ELEVATION_RANGE) in degrees for `count` views."""
    azimuth = torch.rand(count, generator=generator) * 360.0
    lo, hi = ELEVATION_RANGE
    elevation = lo + torch.rand(count, generator=generator) * (hi - lo)
    return azimuth, elevation


def render_views(
    nerf: ClipNerfModel, codes: Codes, azimuths: Tensor, elevations: Tensor, resolution: int,
    frame_extent: Optional[Sequence[float]] = None,
) -> Float[Tensor, "n h w 3"]:
    """Differentiable renders of n objects (`codes` (n, d)), one orbit view each, over the render
    background, each framed as the CLIP's training views are (`framing_corners`): on its object's
    occupied cells, or on a box of `frame_extent` centred on them (a CLIP that sees sizes). Empty
    space is skipped with each shape code's own occupancy grid."""
    return render_views_with_opacity(nerf, codes, azimuths, elevations, resolution, frame_extent)[0]


def render_views_with_opacity(
    nerf: ClipNerfModel, codes: Codes, azimuths: Tensor, elevations: Tensor, resolution: int,
    frame_extent: Optional[Sequence[float]] = None,
) -> tuple[Float[Tensor, "n h w 3"], Float[Tensor, "n h w"]]:
    """`render_views`, and each pixel's opacity (accumulated weight)."""
    device = nerf.box_min.device
    grids = torch.cat([nerf.occupancy_for_codes(z_s) for z_s in codes.z_s.detach()])
    origins, directions = [], []
    for grid, az, el in zip(grids, azimuths.tolist(), elevations.tolist()):
        c2w = orbit_pose(nerf.orbit.distance, az, el)
        corners = framing_corners(*occupied_bounds(grid, nerf.box_min, nerf.box_max), frame_extent)
        k = framing_intrinsics(corners, c2w, resolution, FRAMING_MARGIN)
        camera = make_cameras(c2w[None], [(k.fx, k.fy, k.cx, k.cy, k.width, k.height)])
        bundle = camera.generate_rays(camera_indices=0, keep_shape=True)
        origins.append(bundle.origins.reshape(-1, 3))
        directions.append(bundle.directions.reshape(-1, 3))
    views, pixels = len(origins), resolution * resolution
    origins, directions = torch.cat(origins).to(device), torch.cat(directions).to(device)
    view_of_ray = torch.arange(views, device=device).repeat_interleave(pixels)
    per_ray = codes.take(view_of_ray)
    background = nerf.box_min.new_tensor(BACKGROUNDS[nerf.config.render_background]).expand(views * pixels, 3)
    out = nerf.render_rays(origins, directions, per_ray, grids, view_of_ray, background)
    return out["rgb"].reshape(views, resolution, resolution, 3), out["accumulation"].reshape(views, resolution, resolution)


def apply_change(codes: Codes, target: Literal["shape", "appearance", "parts"], change: Tensor, strength: float = 1.0) -> Codes:
    """Codes with one of them moved by `strength * change` ("parts": the appearance change of each
    part, (parts, d_app), added to the codes' part changes); the others are untouched."""
    if target == "shape":
        return Codes(codes.z_s + strength * change, codes.z_a, codes.part_changes)
    if target == "parts":
        return Codes(codes.z_s, codes.z_a, strength * change + (0.0 if codes.part_changes is None else codes.part_changes))
    return Codes(codes.z_s, codes.z_a + strength * change, codes.part_changes)


def with_changes(codes: Codes, changes: dict[str, Tensor], strength: float = 1.0) -> Codes:
    """Codes moved by `strength` times each change (keys "shape", "appearance" and/or "parts")."""
    for target, change in changes.items():
        codes = apply_change(codes, target, change, strength)
    return codes


def edited_targets(target: Target) -> list[str]:
    """The codes an edit changes, in the order they are changed (shape first)."""
    return ["shape", "appearance"] if target == "both" else [target]


CLEAN_VIEW = (130.0, 25.0)
"""(azimuth, elevation) of the view a shape edit's variants are compared in (`Editor._cleanest`): a
rear three-quarter view, so that the view `clipnerf eval` measures haze from is not the one chosen on."""
CLEAN_RESOLUTION = 48
"""Side (pixels) of those renders: the ranking sharpens with pixels (on the eval's chairs, 48 px
chose less hazy edits than 32 px), and a coarse pass of 48 px costs about 8 ms per variant."""


@torch.no_grad()
def variant_hazes(nerf: ClipNerfModel, codes: Codes, changes: Float[Tensor, "k d"]) -> list[float]:
    """The haze of `codes` under each shape change (rows) in the `CLEAN_VIEW` render at
    `CLEAN_RESOLUTION`: the coarse pass alone (a ranking needs no fine detail), every variant in the
    first's occupancy grid, all as one batch of rays (cheaper than a render call each)."""
    bundle = orbit_camera(CLEAN_RESOLUTION, *CLEAN_VIEW, nerf.orbit).generate_rays(camera_indices=0, keep_shape=True)
    origins, directions = (x.reshape(-1, 3).to(nerf.box_min.device) for x in (bundle.origins, bundle.directions))
    count, pixels = len(changes), len(origins)
    grid = nerf.occupancy_for_codes(codes.z_s + changes[0])
    background = nerf.box_min.new_tensor(BACKGROUNDS[nerf.config.render_background])
    opacity = []
    for rays in torch.split(torch.arange(count * pixels, device=origins.device), nerf.config.eval_num_rays_per_chunk):
        variant = rays // pixels
        opacity.append(nerf.render_rays(origins[rays % pixels], directions[rays % pixels],
                                        Codes(codes.z_s + changes[variant], codes.z_a.expand(len(rays), -1)), grid,
                                        torch.zeros_like(variant), background.expand(len(rays), 3), fine=False)["accumulation"])
    side = CLEAN_RESOLUTION
    return [haze(view.reshape(side, side, 1)) for view in torch.cat(opacity).reshape(count, pixels)]


SIZED_EXEMPLAR_FILL = 0.7
"""Share of the frame an exemplar (framed on its object) is shrunk to for a CLIP that sees sizes.
A photo has no scale; the median procedural object spans about this share of its category's
framing box (chairs 0.69, 0.66, 0.73 in x, y, z; cars 0.88, 0.87, 0.64), so an exemplar reads as
an object of middling size, not as the largest one."""


def exemplar_view(clip, nerf: ClipNerfModel, image: Float[Tensor, "s s 3"]) -> Float[Tensor, "t t 3"]:
    """An exemplar image (`read_exemplar`) framed as `clip`'s views of `nerf`'s category are."""
    if clip.frame_extent(nerf.category) is None:
        return image
    return pad_to_fill(image, SIZED_EXEMPLAR_FILL)


def edit_losses(
    nerf: ClipNerfModel,
    clip,
    before: Codes,
    after: Codes,
    target_embedding: Float[Tensor, "n d_clip"],
    azimuths: Tensor,
    elevations: Tensor,
    config: EditLossConfig,
    source_embedding: Optional[Float[Tensor, "n d_clip"]] = None,
) -> dict[str, Tensor]:
    """The editing objective of `after` (the edited codes of n objects, one view each):
    CLIP distance (or its directional variant), code change penalty, optional haze and adversarial terms."""
    extent = clip.frame_extent(nerf.category)
    resolution = config.resolution or clip.image_size
    render, opacity = render_views_with_opacity(nerf, after, azimuths, elevations, resolution, extent)
    embedding = clip.encode_image(render)
    losses: dict[str, Tensor] = {}
    if config.directional:
        with torch.no_grad():
            render_before = clip.encode_image(render_views(nerf, before, azimuths, elevations, resolution, extent))
        source = render_before if source_embedding is None else source_embedding
        distance = directional_clip_distance(embedding, render_before, target_embedding, source)
    else:
        distance = clip_distance(embedding, target_embedding)
    losses["clip"] = config.clip_weight * distance.mean()
    losses["code_change"] = config.code_change_weight * code_change_penalty(before, after).mean()
    if config.haze_weight > 0:
        losses["haze"] = config.haze_weight * semi_transparency(opacity).mean()
    if config.adversarial_weight > 0 and nerf.discriminator is not None:
        size = nerf.config.patch_size
        patches = F.interpolate(render.permute(0, 3, 1, 2), size=(size, size), mode="area").permute(0, 2, 3, 1)
        losses["adversarial"] = config.adversarial_weight * F.softplus(-nerf.discriminator(patches)).mean()
    return losses


@dataclass
class Editor:
    """Applies edits to codes with a frozen NeRF, a frozen CLIP and (for mapper mode) trained mappers."""

    nerf: ClipNerfModel
    clip: object  # ClipEncoder
    mappers: Optional[Mappers] = None
    loss: EditLossConfig = field(default_factory=EditLossConfig)
    neutral_prompt: Optional[str] = None
    """The category's plain prompt ("a chair"), the source of directional losses."""
    library: Optional[PromptLibrary] = None
    """The category's prompt library: its part words make a colour prompt that names one part a part edit."""
    optimize_lr: float = 0.05
    views_per_step: int = 2

    def embed(self, edit: Edit) -> Float[Tensor, "1 d_clip"]:
        device = self.nerf.box_min.device
        with torch.no_grad():
            if edit.prompt is not None:
                return self.clip.encode_text([edit.prompt]).to(device)
            return self.clip.encode_image(exemplar_view(self.clip, self.nerf, edit.exemplar)[None].to(device)).to(device)

    def apply(self, edit: Edit, codes: Codes) -> Codes:
        """The edited codes of one object (`codes` of shape (d,) each)."""
        return with_changes(codes.to(self.nerf.box_min.device).detach(), self.changes(edit, codes), edit.strength)

    def changes(self, edit: Edit, codes: Codes) -> dict[str, Tensor]:
        """The code changes of an edit at strength 1, by target (shape first). Scaling them with
        `with_changes` gives the edit at any strength without encoding the prompt again."""
        edit.check()
        embedding = self.embed(edit)
        codes = codes.to(self.nerf.box_min.device).detach()
        if edit.mode == "mapper":
            if self.mappers is None:
                raise UserError("this run has no mappers: train them with ns-train clip-nerf-mappers, or use --mode optimize")
            batch, prior = Codes(codes.z_s[None], codes.z_a[None]), self.nerf.code_prior()
            with torch.no_grad():
                changes = {target: self.mappers.change(target, embedding, batch, prior, edit.exemplar is not None)[0]
                           for target in edited_targets(edit.target)}
                if "shape" in changes:
                    changes["shape"] = self._cleanest(codes, self.mappers.shape_variants(codes.z_s, changes["shape"], prior))
            return self._on_named_part(edit, changes)
        return self._on_named_part(edit, self._optimize(edit, codes, embedding))

    def _on_named_part(self, edit: Edit, changes: dict[str, Tensor]) -> dict[str, Tensor]:
        """The appearance change of a prompt that names one part (the library's part words), or of
        an edit given a part, as a change of that part alone, where the NeRF has a part head: the
        mapper's change for "a chair with a red seat" reddens the whole chair (the CLIPs do not tie
        a colour to a part), so it is kept only where the part head finds the seat."""
        head, part = self.nerf.part_head, edit.part
        if part is None:
            part = self.library.named_part(edit.prompt) if self.library is not None and edit.prompt else None
        elif part != "whole" and part not in (head.parts if head is not None else ()):
            known = f"its part head knows {', '.join(head.parts)}" if head is not None else "it has no part head (clipnerf train-parts)"
            raise UserError(f"part {part!r}: the edit cannot be kept to it, as {known}; or pass 'whole'")
        if "appearance" not in changes or head is None or part not in head.parts:
            return changes
        change = changes["appearance"]
        parts = change.new_zeros(len(head.parts), change.shape[-1])
        parts[head.parts.index(part)] = change
        return {**{k: v for k, v in changes.items() if k != "appearance"}, "parts": parts}

    def _cleanest(self, codes: Codes, changes: Float[Tensor, "k d"]) -> Tensor:
        """Of the shape changes (rows), the one whose `CLEAN_VIEW` render is least hazy
        (`variant_hazes`): the first (the mapper's own) when it is the only one."""
        if len(changes) == 1:
            return changes[0]
        hazes = variant_hazes(self.nerf, codes, changes)
        return changes[int(np.argmin(np.nan_to_num(hazes, nan=np.inf)))]

    def _optimize(self, edit: Edit, codes: Codes, embedding: Tensor) -> dict[str, Tensor]:
        """Optimise the code change of one object: shape first, then appearance (steps split)."""
        from rich.progress import track

        generator = torch.Generator().manual_seed(edit.seed)
        views = self.views_per_step
        source = None
        if self.loss.directional and edit.prompt is not None and self.neutral_prompt:
            with torch.no_grad():
                source = self.clip.encode_text([self.neutral_prompt]).to(embedding.device).expand(views, -1)
        targets = edited_targets(edit.target)
        changes: dict[str, Tensor] = {}
        for target in targets:
            before = Codes(codes.z_s.expand(views, -1), codes.z_a.expand(views, -1))
            change = torch.zeros_like(codes.z_s if target == "shape" else codes.z_a, requires_grad=True)
            optimizer = torch.optim.Adam([change], lr=self.optimize_lr)
            for _ in track(range(max(1, edit.steps // len(targets))), description=f"optimising the {target} code", transient=True):
                azimuths, elevations = random_views(views, generator)
                after = apply_change(before, target, change)
                losses = edit_losses(self.nerf, self.clip, before, after, embedding.expand(views, -1),
                                     azimuths, elevations, self.loss, source)
                optimizer.zero_grad()
                sum(losses.values()).backward()
                optimizer.step()
            changes[target] = change.detach()
            codes = apply_change(codes, target, changes[target])
        return changes


def editor_for(model, clip_config=None) -> Editor:
    """The Editor of a loaded run's model: a mapper run brings its mappers, CLIP and objective; a
    clip-nerf run edits in optimize mode only, with `clip_config` (default: the compact CLIP)."""
    from clipnerf_ns.clip.encoder import ClipConfig, ClipEncoder  # deferred: open_clip is slow to import

    if hasattr(model, "mappers"):
        return Editor(model.nerf, model.clip, model.mappers, model.config.loss, model.library.neutral, model.library)
    clip = ClipEncoder.load(clip_config or ClipConfig(), device=model.box_min.device)
    try:
        library = load_prompt_library(None, model.category)
    except UserError:
        library = None
    return Editor(model, clip, None, EditLossConfig(), library and library.neutral, library)
