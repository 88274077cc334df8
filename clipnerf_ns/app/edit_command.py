"""`clipnerf edit`: edit one object of a trained run by text or exemplar, from the command line."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np

from clipnerf_ns.app.runs import resolve_object, write_render_config
from clipnerf_ns.atomic import atomic_output_dir, check_output_dir, output_lock
from clipnerf_ns.clip.config import ClipConfig
from clipnerf_ns.data.cameras import VIEW_DEG
from clipnerf_ns.errors import UserError
from clipnerf_ns.validation import MAX_COUNT, MAX_RESOLUTION, STRENGTH_BOUNDS, Bounds


@dataclass(kw_only=True)
class EditCommand:
    """Edit one object of a trained run with a text prompt or an exemplar image. Writes before and
    after images, the edited codes (codes.safetensors) and a config.yml that `ns-render` and
    `ns-viewer` load to show the edited object."""

    load_config: Path
    """config.yml of a mapper run (ns-train clip-nerf-mappers; both modes) or of a clip-nerf run (optimize mode only)."""
    output_dir: Path
    """Folder to write (atomically)."""
    object: Optional[str] = None
    """The object to edit: a training object's id (chair_0007) or index."""
    codes: Optional[Path] = None
    """The object to edit: a codes file (from clipnerf invert or an earlier clipnerf edit)."""
    prompt: Optional[str] = None
    """What the object should become, e.g. 'a red chair' or 'a chair with a tall back'."""
    exemplar: Optional[Path] = None
    """An image whose look the object should take (instead of a prompt)."""
    target: Literal["shape", "appearance", "both"] = "both"
    """Which code(s) the edit may change; `both` changes the shape code first, then the appearance code."""
    strength: Annotated[float, Bounds(*STRENGTH_BOUNDS)] = 1.0
    """Scale of the code change (0 = no edit; above 1 exaggerates; negative: the opposite way)."""
    mode: Literal["mapper", "optimize"] = "mapper"
    """`mapper`: one forward pass through the trained mappers; `optimize`: optimise this object's code change."""
    part: Optional[str] = None
    """Keep the appearance change to this part (seat, back, base or arms for the chairs; needs the run's part
    head, clipnerf train-parts); `whole`: the whole object; default: the part the prompt names, if any."""
    steps: Annotated[int, Bounds(1, MAX_COUNT)] = 40
    """Optimisation steps (optimize mode)."""
    seed: int = 0
    """Seed of the optimize mode's random views."""
    clip: ClipConfig = field(default_factory=ClipConfig)
    """CLIP for optimize mode on a clip-nerf run (a mapper run always uses the CLIP its mappers were trained with)."""
    resolution: Annotated[int, Bounds(8, MAX_RESOLUTION)] = 128
    """Side of the before/after images (pixels)."""
    azimuth: float = VIEW_DEG[0]
    """Camera azimuth of the before/after images (degrees)."""
    elevation: Annotated[float, Bounds(-90, 90)] = VIEW_DEG[1]
    """Camera elevation of the before/after images (degrees)."""
    overwrite: bool = False
    """Replace the output folder if it exists."""

    def main(self) -> Path:
        # deferred: the command line imports this module at start-up; these import torch and nerfstudio
        import torch
        from PIL import Image

        from clipnerf_ns.codes import load_codes, model_fingerprint, save_codes
        from clipnerf_ns.data.cameras import orbit_camera
        from clipnerf_ns.data.images import to_uint8
        from clipnerf_ns.editing.edit import Edit, editor_for, read_exemplar
        from clipnerf_ns.pipelines.runs import load_run, nerf_of, read_run_config

        if (self.object is None) == (self.codes is None):
            raise UserError("give the object to edit with exactly one of --object ID or --codes FILE")
        if (self.prompt is None) == (self.exemplar is None):
            raise UserError("give exactly one of --prompt TEXT or --exemplar IMAGE")
        if self.prompt is not None and not self.prompt.strip():
            raise UserError("empty prompt: describe the edit, e.g. --prompt 'a red chair'")
        check_output_dir(self.output_dir, self.overwrite)
        with output_lock(self.output_dir):  # held for the whole run: a second edit into this folder stops at once
            exemplar = read_exemplar(self.exemplar) if self.exemplar is not None else None
            config = read_run_config(self.load_config)
            _, pipeline = load_run(self.load_config)
            nerf = nerf_of(pipeline)
            fingerprint = model_fingerprint(nerf.field)
            if self.codes is not None:
                sizes = nerf.config.field
                codes, source_info = load_codes(self.codes, fingerprint, sizes.shape_dim, sizes.appearance_dim)
                source = {"codes": str(self.codes), "from": source_info}
            else:
                index = resolve_object(nerf.object_ids, self.object)
                codes = nerf.object_codes(torch.tensor(index, device=nerf.box_min.device)).detach()
                source = {"object": nerf.object_ids[index]}
            editor = editor_for(pipeline.model, self.clip)
            edit = Edit(self.prompt, exemplar, self.target, self.strength, self.mode, self.steps, self.seed, self.part)
            start = time.perf_counter()
            edited = editor.apply(edit, codes)
            seconds = time.perf_counter() - start
            camera = orbit_camera(self.resolution, self.azimuth, self.elevation, nerf.orbit)
            before = to_uint8(nerf.render_view(camera, codes)["rgb"])
            after = to_uint8(nerf.render_view(camera, edited)["rgb"])
            with atomic_output_dir(self.output_dir, self.overwrite) as tmp:
                Image.fromarray(before).save(tmp / "before.png")
                Image.fromarray(after).save(tmp / "after.png")
                Image.fromarray(np.concatenate([before, after], axis=1)).save(tmp / "comparison.png")
                info = {"source": source, "edit": edit.describe(), "clip": editor.clip.name, "seconds": seconds}
                save_codes(tmp / "codes.safetensors", edited, fingerprint, info)
                config.pipeline.model.render_codes = (self.output_dir / "codes.safetensors").resolve()
                write_render_config(config, tmp)
        print(f"edit took {seconds:.2f} s ({self.mode}); before/after in {self.output_dir}/comparison.png")
        print(f"render it: ns-render camera-path --load-config {self.output_dir}/config.yml "
              "--camera-path-filename PATH --output-path edited.mp4")
        return self.output_dir
