"""Which part is a colour on? What the shipped CLIPs and the judge read of part colour prompts (not a test).

    OMP_NUM_THREADS=1 python bench/bench_part_colours.py [--objects 40] [--views 4] [--seed 1000]

For each part colour prompt of the chairs library ("a chair with a red seat", ... "a chair with
brown legs") and each of `--objects` fresh procedural chairs (a seed no model trained on), three
colourings of the same chair: the named part in the named colour and the rest grey (brown where
the colour is grey); the whole chair in the named colour; another part in the named colour. Each
is rendered from `--views` front views, framed as each model's training views were. A CLIP is
right when the prompt is more similar to the part-only colouring than to the other (similarity of
the mean image embedding); the judge is right when it reads the named part's colour question
(seat_color, back_color, leg_color) as the named colour on the part-only colouring.

A mapper trained to raise a CLIP's similarity to "a chair with a red seat" paints the seat red
only where that CLIP prefers the part-only colouring to the whole chair in red.
"""

import argparse
import warnings

import numpy as np
import torch

from clipnerf_ns.app.edit_evaluation import PART_COLOUR_QUESTIONS, named_part_color_of
from clipnerf_ns.clip.domain_data import framing_of, over_white, render_views
from clipnerf_ns.clip.encoder import SHIPPED_MODELS, ClipConfig, ClipEncoder
from clipnerf_ns.data.render import ColoredMesh
from clipnerf_ns.data.synth_chairs import generate_chair
from clipnerf_ns.data.synth_parts import NAMED_COLORS
from clipnerf_ns.editing.prompts import load_prompt_library
from clipnerf_ns.eval.judge import Judge

OTHER_PART = {"seat": "back", "back": "seat", "base": "seat"}


def coloured(chair: ColoredMesh, parts: tuple[str, ...], colour: str) -> ColoredMesh:
    """The chair with `parts` in `colour` and the rest grey (brown when `colour` is grey)."""
    rest = "brown" if colour == "gray" else "gray"
    rgb = np.tile(np.asarray(NAMED_COLORS[rest], np.float32), (len(chair.face_parts), 1))
    rgb[np.isin(chair.face_parts, parts)] = NAMED_COLORS[colour]
    return ColoredMesh(chair.mesh, rgb, chair.face_parts)


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=40, help="fresh chairs (those with every part the prompts name)")
    parser.add_argument("--views", type=int, default=4, help="front views of each colouring")
    parser.add_argument("--seed", type=int, default=1000, help="the chairs' seed (no shipped model used it)")
    args = parser.parse_args()
    encoders = {name: ClipEncoder.load(ClipConfig(model=name)) for name in SHIPPED_MODELS}
    judge = Judge.load()
    prompts = [(p, *named_part_color_of(p, "chair")) for p in load_prompt_library(None, "chairs").for_target("appearance")
               if named_part_color_of(p, "chair") is not None]
    right = {(p, who, against): [] for p, _, _ in prompts for who in encoders
             for against in ("whole", "other part")}
    judged = {p: [] for p, _, _ in prompts}
    chairs, index = 0, 0
    while chairs < args.objects:
        chair = generate_chair(np.random.default_rng([args.seed, index])).mesh
        index += 1
        if not {"seat", "back", "base"} <= set(chair.face_parts):
            continue  # a stool has no back to colour
        chairs += 1
        for prompt, part, colour in prompts:
            colourings = {"part": coloured(chair, (part,), colour), "whole": coloured(chair, tuple(set(chair.face_parts)), colour),
                          "other part": coloured(chair, (OTHER_PART[part],), colour)}
            for name_of_clip, encoder in encoders.items():
                text = encoder.encode_text([prompt])[0]
                similarity = {}
                for colouring, mesh in colourings.items():
                    rgba = render_views(mesh, "chairs", np.random.default_rng(index), args.views, encoder.image_size, "front",
                                        framing_of(encoder, "chairs"))
                    image = encoder.encode_image(over_white(rgba)).mean(0)
                    similarity[colouring] = float(text @ image / image.norm())
                for against in ("whole", "other part"):
                    right[prompt, name_of_clip, against].append(similarity["part"] > similarity[against])
            rgba = render_views(colourings["part"], "chairs", np.random.default_rng(index), args.views, judge.image_size,
                                "front", framing_of(judge, "chairs"))
            with torch.no_grad():
                answers = judge.answers(over_white(rgba), "chairs")[PART_COLOUR_QUESTIONS[part]]
            judged[prompt].append(np.mean([a == colour for a in answers]))
    names = list(encoders)
    print(f"{chairs} fresh chairs (seed {args.seed}), {args.views} front views of each colouring\n")
    header = " | ".join(f"`{n}`: part over whole / over other part" for n in names)
    print(f"| part prompt | {header} | judge reads the part's colour |")
    print("| --- | " + " | ".join("---" for _ in names) + " | --- |")
    for prompt, _, _ in prompts:
        cells = [f"{np.mean(right[prompt, n, 'whole']):.2f} / {np.mean(right[prompt, n, 'other part']):.2f}" for n in names]
        print(f"| {prompt} | " + " | ".join(cells) + f" | {np.mean(judged[prompt]):.2f} |")


if __name__ == "__main__":
    main()
