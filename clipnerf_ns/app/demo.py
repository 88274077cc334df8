"""`clipnerf demo`: the README's main job, offline on the CPU in a few minutes, with the shipped
pretrained chairs model, its mappers and the compact CLIP. Every step is a clipnerf command or
nerfstudio's own ns-render, run in this process on the same run folders a user would use."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from PIL import Image, ImageDraw

from clipnerf_ns.app.edit_command import EditCommand
from clipnerf_ns.app.invert_command import Invert
from clipnerf_ns.app.pretrained import GREEN_CHAIR, UNSEEN_CHAIR, YELLOW_CHAIR, materialize
from clipnerf_ns.app.runs import Turntable
from clipnerf_ns.atomic import check_output_dir
from clipnerf_ns.editing.invert_config import InversionConfig
from clipnerf_ns.ffmpeg import ensure_ffmpeg_on_path
from clipnerf_ns.validation import MAX_COUNT, MAX_RESOLUTION, Bounds, check_numbers

TEXT_EDIT = (GREEN_CHAIR, "a red chair")
"""A chair the mappers never trained on (their held-out objects) and the prompt the demo gives it."""
SHAPE_PROMPT = "an armchair"
"""The shape prompt the demo gives the same chair."""
EXEMPLAR = (YELLOW_CHAIR, 1)
"""Object and training view whose picture is the exemplar (a yellow dining chair)."""
UNSEEN_PROMPT = "a purple chair"
"""How the demo recolours the inverted unseen chair."""


@dataclass
class Demo:
    """The README's main job: load the shipped pretrained chairs model and mappers (regenerating
    the procedural collection they were trained on), edit a chair's colour and its shape by text
    prompts and its look by an exemplar image, invert a picture of a chair the model never saw and
    recolour it, and render an MP4 turntable of the colour edit with ns-render. Everything lands
    in --out, and the run folders there open in ns-viewer with the editor."""

    out: Path = Path("demo_out")
    """Output folder."""
    views: Annotated[int, Bounds(1, 64)] = 4
    """Training views per regenerated chair (the shipped model needs the collection's objects, not many of its images)."""
    inversion_steps: Annotated[int, Bounds(1, MAX_COUNT)] = 150
    """Optimisation steps of the inversion if it starts from the coarse search (clipnerf invert uses
    300); from the shipped model's inversion encoder, as it does, it takes the encoder's 40."""
    frames: Annotated[int, Bounds(1, MAX_COUNT)] = 48
    """Frames of the turntable video."""
    resolution: Annotated[int, Bounds(8, MAX_RESOLUTION)] = 128
    """Side of the before/after images and of the video (pixels)."""
    overwrite: bool = False
    """Replace earlier demo output."""

    def main(self) -> Path:
        check_numbers(self)
        check_output_dir(self.out, self.overwrite)
        if self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True)
        print("1/6 regenerating the collection of the pretrained chairs model ...")
        runs = materialize(self.out, views=self.views)
        print(f"    chairs model: {runs.stage1}\n    its mappers:  {runs.mappers}")

        def edit(name: str, target: str = "appearance", **kwargs) -> Path:
            command = EditCommand(load_config=runs.mappers, output_dir=self.out / name, target=target,
                                  resolution=self.resolution, **kwargs)
            return command.main()

        obj, prompt = TEXT_EDIT
        print(f"2/6 text edit of the colour: {obj} + {prompt!r}")
        text_dir = edit("edit_text", object=obj, prompt=prompt)
        print(f"3/6 text edit of the shape: {obj} + {SHAPE_PROMPT!r}")
        shape_dir = edit("edit_shape", target="shape", object=obj, prompt=SHAPE_PROMPT)
        exemplar_object, view = EXEMPLAR
        exemplar = runs.data / exemplar_object / "images" / f"{view:03d}.png"
        print(f"4/6 exemplar edit: {obj} + the look of {exemplar}")
        exemplar_dir = edit("edit_exemplar", object=obj, exemplar=exemplar)
        print(f"5/6 inverting {UNSEEN_CHAIR.name} (a chair neither model saw), then {UNSEEN_PROMPT!r}")
        inverted = Invert(load_config=runs.stage1, image=UNSEEN_CHAIR, output_dir=self.out / "inverted",
                          inversion=InversionConfig(steps=self.inversion_steps)).main()
        recoloured_dir = edit("inverted_recoloured", codes=inverted / "codes.safetensors", prompt=UNSEEN_PROMPT)
        print("6/6 turntable of the colour edit with ns-render")
        video = self._turntable(text_dir / "config.yml")
        summary = self.out / "demo.png"
        Image.fromarray(self._summary(text_dir, shape_dir, exemplar_dir, exemplar, inverted, recoloured_dir)).save(summary)
        pose = json.loads((inverted / "pose.json").read_text())
        print(
            f"\nbefore | after of each edit, and unseen chair | inversion | recoloured: {summary}\n"
            f"text edit:     {text_dir / 'comparison.png'}\n"
            f"shape edit:    {shape_dir / 'comparison.png'}\n"
            f"exemplar edit: {exemplar_dir / 'comparison.png'}\n"
            f"inversion:     {inverted / 'comparison.png'} (PSNR {pose['psnr']:.1f} dB)\n"
            f"recoloured:    {recoloured_dir / 'comparison.png'}\n"
            f"turntable:     {video}\n"
            f"edit interactively: ns-viewer --load-config {runs.mappers}"
        )
        return self.out

    def _turntable(self, config: Path) -> Path:
        from nerfstudio.scripts.render import RenderCameraPath  # deferred: nerfstudio is slow to import

        ensure_ffmpeg_on_path()
        path = Turntable(output=self.out / "turntable.json", frames=self.frames, resolution=self.resolution,
                         seconds=self.frames / 12).main()
        video = self.out / "edited_turntable.mp4"
        RenderCameraPath(load_config=config, camera_path_filename=path, output_path=video).main()
        return video

    def _summary(self, text_dir: Path, shape_dir: Path, exemplar_dir: Path, exemplar: Path, inverted: Path,
                 recoloured: Path) -> np.ndarray:
        """One picture: the chair, its colour and shape edits, exemplar and its edit; unseen chair,
        its inversion and its recolouring; all tiles at --resolution."""
        def tile(path: Path, crop_thirds: int = -1) -> np.ndarray:
            image = Image.open(path).convert("RGBA")
            if crop_thirds >= 0:  # comparison.png of an inversion: input | render | error
                width = image.width // 3
                image = image.crop((crop_thirds * width, 0, (crop_thirds + 1) * width, image.height))
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image).convert("RGB")
            return np.asarray(image.resize((self.resolution, self.resolution), Image.LANCZOS))

        def captioned(image: np.ndarray, caption: str) -> np.ndarray:
            strip = Image.new("RGB", (image.shape[1], 16), (255, 255, 255))
            ImageDraw.Draw(strip).text((3, 2), caption, fill=(40, 40, 40))
            return np.concatenate([image, np.asarray(strip)], axis=0)

        obj, prompt = TEXT_EDIT
        row_edits = [captioned(tile(text_dir / "before.png"), obj), captioned(tile(text_dir / "after.png"), repr(prompt)),
                     captioned(tile(shape_dir / "after.png"), repr(SHAPE_PROMPT)),
                     captioned(tile(exemplar), "exemplar"), captioned(tile(exemplar_dir / "after.png"), "exemplar edit")]
        row_unseen = [captioned(tile(inverted / "comparison.png", 0), "unseen chair"),
                      captioned(tile(inverted / "comparison.png", 1), "inversion"),
                      captioned(tile(recoloured / "after.png"), repr(UNSEEN_PROMPT))]
        row_unseen += [np.full_like(row_edits[0], 255)] * (len(row_edits) - len(row_unseen))
        return np.concatenate([np.concatenate(row_edits, axis=1), np.concatenate(row_unseen, axis=1)], axis=0)
