"""`clipnerf invert`: a photo becomes the pose and codes of a trained run (the inversion itself is
`editing.invert`), written as files that `clipnerf edit`, ns-render and ns-viewer read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import tyro

from clipnerf_ns.app.runs import write_render_config
from clipnerf_ns.atomic import atomic_output_dir, check_output_dir, output_lock
from clipnerf_ns.editing.invert_config import ENCODER_FILE, EncoderTraining, InversionConfig
from clipnerf_ns.errors import UserError


@dataclass
class Invert:
    """Invert an image into a trained run (the paper's section 3.3): find the camera pose, shape
    code and appearance code that render it. Writes codes.safetensors (for `clipnerf edit`),
    pose.json, comparison.png (input | render | error) and a config.yml that ns-render and
    ns-viewer load to show the inverted object."""

    load_config: Path
    """The run's config.yml (written by ns-train)."""
    image: Path
    """The image to invert: RGB or RGBA, any size."""
    output_dir: Path
    """Folder for the results."""
    mask: Optional[Path] = None
    """Foreground mask (white = object, same size as the image); default: the image's alpha
    channel, else pixels that differ from the border colour."""
    inversion: Annotated[InversionConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=InversionConfig)
    """The optimisation."""
    overwrite: bool = False
    """Replace earlier results in the output folder."""

    def main(self) -> Path:
        out, pose = invert_to_folder(self.load_config, self.image, self.mask, self.output_dir, self.inversion, self.overwrite)
        print(f"PSNR {pose['psnr']:.2f} dB at azimuth {pose['azimuth_deg']:.1f}, elevation {pose['elevation_deg']:.1f} deg, "
              f"distance {pose['distance']:.2f}; ns-viewer --load-config {out / 'config.yml'}")
        return out


def invert_to_folder(load_config: Path, image: Path, mask: Optional[Path], out_dir: Path, config: InversionConfig,
                     overwrite: bool = False, progress: bool = True) -> tuple[Path, dict]:
    """Invert `image` into the run of `load_config` and write the results into `out_dir`:
    codes.safetensors, pose.json, comparison.png and a config.yml that ns-render / ns-viewer load
    to show the inverted object. Every check happens before anything is written, and the folder
    is written atomically (`atomic_output_dir`)."""
    # deferred: the command line imports this module at start-up, and these import torch and nerfstudio
    import torch

    from clipnerf_ns.codes import model_fingerprint
    from clipnerf_ns.data.photos import read_photo
    from clipnerf_ns.editing.inversion_encoder import run_encoder
    from clipnerf_ns.editing.invert import load_clip_for, run_inversion, start_inversion, write_results
    from clipnerf_ns.pipelines.runs import load_run, nerf_of, read_run_config

    check_output_dir(out_dir, overwrite)
    config.check()
    with output_lock(out_dir):  # a second inversion into the same folder stops at once
        photo = read_photo(image, mask, config.mask_threshold)
        run_config = read_run_config(load_config)
        _, pipeline = load_run(load_config)
        model = nerf_of(pipeline)
        model.requires_grad_(False)
        model.eval()
        clip = load_clip_for(config, model.box_min.device)
        encoder = run_encoder(load_config, model_fingerprint(model.field), config.start)
        inversion = start_inversion(model, photo, config, clip, encoder)
        run_inversion(inversion, progress)
        info = {"image": str(image), "mask": str(mask) if mask else photo.mask_source, "stage1": str(load_config),
                "start": inversion.start, "steps": inversion.planned_steps, "seed": config.seed, "method": "clipnerf invert"}
        with torch.no_grad(), atomic_output_dir(out_dir, overwrite) as tmp:
            write_results(inversion, tmp, model_fingerprint(model.field), info)
            if hasattr(run_config.pipeline.model, "render_codes"):
                run_config.pipeline.model.render_codes = (Path(out_dir) / "codes.safetensors").resolve()
                write_render_config(run_config, tmp, overwrite=True)
            document = json.loads((tmp / "pose.json").read_text())
        return Path(out_dir), document


@dataclass
class TrainEncoder(EncoderTraining):
    """Train the inversion encoder of a stage-1 run: a small ConvNet that guesses a photo's camera
    and codes, so that `clipnerf invert` starts next to the answer (its likeliest azimuths refined
    briefly, then `--encoder-steps` steps) instead of the coarse search. Written beside the run's
    config.yml by default, where `clipnerf invert` finds it."""

    def main(self) -> Path:
        # deferred: the command line imports this module at start-up, and these import torch and nerfstudio
        import time

        from clipnerf_ns.codes import model_fingerprint
        from clipnerf_ns.editing.inversion_encoder import save_encoder, train_encoder
        from clipnerf_ns.pipelines.runs import load_run, nerf_of

        self.check()
        out = self.out or Path(self.load_config).parent / ENCODER_FILE
        if out.exists() and not self.overwrite:
            raise UserError(f"{out} exists; pass --overwrite to replace it")
        start = time.perf_counter()
        _, pipeline = load_run(self.load_config)
        model = nerf_of(pipeline)
        model.requires_grad_(False)
        model.eval()
        net, figures = train_encoder(model, self)
        figures["seconds"] = round(time.perf_counter() - start, 1)
        save_encoder(out, net, model_fingerprint(model.field), self, figures)
        print("held-out renders: " + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()))
        return out
