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

from clipnerf_ns.app.prompt_meanings import PART_COLOUR_QUESTIONS, named_part_color_of
from clipnerf_ns.clip.domain_data import framing_of, over_white, render_views
from clipnerf_ns.clip.encoder import SHIPPED_MODELS, ClipConfig, ClipEncoder
from clipnerf_ns.data.render import ColoredMesh
from clipnerf_ns.data.synth_chairs import generate_chair
from clipnerf_ns.data.synth_parts import NAMED_COLORS
from clipnerf_ns.editing.prompts import load_prompt_library
from clipnerf_ns.eval.judge import Judge

OTHER_PART = {"seat": "back", "back": "seat", "base": "seat"}


def painted(chair: ColoredMesh, colours: dict[str, str], rest: str) -> ColoredMesh:
    """The chair with each part of `colours` in its named colour and the other parts in `rest`."""
    rgb = np.stack([NAMED_COLORS[colours.get(part, rest)] for part in chair.face_parts]).astype(np.float32)
    return ColoredMesh(chair.mesh, rgb, chair.face_parts)


def coloured(chair: ColoredMesh, parts: tuple[str, ...], colour: str) -> ColoredMesh:
    """The chair with `parts` in `colour` and the rest grey (brown when `colour` is grey)."""
    return painted(chair, {part: colour for part in parts}, "brown" if colour == "gray" else "gray")


def part_colourings(chair: ColoredMesh, part: str, colour: str) -> dict[str, ColoredMesh]:
    """The three colourings a part prompt is asked to choose between: the part only, the whole
    chair, another part."""
    return {"part": coloured(chair, (part,), colour), "whole": coloured(chair, tuple(set(chair.face_parts)), colour),
            "other part": coloured(chair, (OTHER_PART[part],), colour)}


def embedded(encoder, mesh: ColoredMesh, seed: int, views: int) -> torch.Tensor:
    """The unit mean image embedding of `views` front views of `mesh`, framed as `encoder` was trained."""
    rgba = render_views(mesh, "chairs", np.random.default_rng(seed), views, encoder.image_size, "front",
                        framing_of(encoder, "chairs"))
    image = encoder.encode_image(over_white(rgba)).mean(0)
    return image / image.norm()


def choice_rates(encoder, images: dict, prompt: str) -> tuple[float, float]:
    """How often `prompt` is closer to the part-only colouring than to the whole chair, and than to
    another part, over the chairs of `images` ((chair, prompt, colouring) -> image embedding)."""
    text = encoder.encode_text([prompt])[0]
    chairs = sorted({c for c, p, _ in images if p == prompt})
    score = {k: np.array([float(text @ images[c, prompt, k]) for c in chairs]) for k in ("part", "whole", "other part")}
    return float(np.mean(score["part"] > score["whole"])), float(np.mean(score["part"] > score["other part"]))


def chairs_with_backs(seed: int, count: int):
    """(index, mesh) of the first `count` chairs of `seed` that have a seat, a back and legs."""
    index, found = 0, 0
    while found < count:
        chair = generate_chair(np.random.default_rng([seed, index])).mesh
        if {"seat", "back", "base"} <= set(chair.face_parts):  # a stool has no back to colour
            found += 1
            yield index, chair
        index += 1


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
    images = {name: {} for name in encoders}  # (chair, prompt, colouring) -> mean image embedding
    judged = {p: [] for p, _, _ in prompts}
    for index, chair in chairs_with_backs(args.seed, args.objects):
        for prompt, part, colour in prompts:
            colourings = part_colourings(chair, part, colour)
            for name, encoder in encoders.items():
                for colouring, mesh in colourings.items():
                    images[name][index, prompt, colouring] = embedded(encoder, mesh, index, args.views)
            rgba = render_views(colourings["part"], "chairs", np.random.default_rng(index), args.views, judge.image_size,
                                "front", framing_of(judge, "chairs"))
            with torch.no_grad():
                answers = judge.answers(over_white(rgba), "chairs")[PART_COLOUR_QUESTIONS[part]]
            judged[prompt].append(np.mean([a == colour for a in answers]))
    print(f"{args.objects} fresh chairs (seed {args.seed}), {args.views} front views of each colouring\n")
    print_choices(encoders, images, prompts, judged)
    print_probes(images, prompts)


def print_choices(encoders: dict, images: dict, prompts: list, judged: dict) -> None:
    """The table: how often each CLIP's prompt is closer to the part-only colouring than to the others."""
    header = " | ".join(f"`{n}`: part over whole / over other part" for n in encoders)
    print(f"| part prompt | {header} | judge reads the part's colour |")
    print("| --- | " + " | ".join("---" for _ in encoders) + " | --- |")
    for prompt, _, _ in prompts:
        cells = ["{:.2f} / {:.2f}".format(*choice_rates(encoder, images[name], prompt)) for name, encoder in encoders.items()]
        print(f"| {prompt} | " + " | ".join(cells) + f" | {np.mean(judged[prompt]):.2f} |")


def print_probes(images: dict, prompts: list) -> None:
    """What each CLIP's image embedding holds, whatever its text side reads: a linear probe fit on
    the first half of the chairs and scored on the rest tells the part-only colouring from the
    whole chair in that colour, and a coloured seat from a coloured back (all prompts pooled)."""
    from bench_clip import balanced, fit_linear_probe

    for name, table in images.items():
        chairs = sorted({c for c, _, _ in table})
        fit = set(chairs[: len(chairs) // 2])
        figures = []
        for other, which in (("whole", [p for p, _, _ in prompts]), ("other part", [p for p, part, _ in prompts if part != "base"])):
            rows = [(c, p, k) for c in chairs for p in which for k in ("part", other)]
            x = torch.stack([table[r] for r in rows])
            if other == "whole":  # is the colour on one part only?
                y = torch.tensor([k == "part" for _, _, k in rows])
            else:  # is the coloured part the seat?
                y = torch.tensor([(dict((q, part) for q, part, _ in prompts)[p] == "seat") == (k == "part") for _, p, k in rows])
            train = torch.tensor([c in fit for c, _, _ in rows])
            probe = fit_linear_probe(x[train], y[train])
            figures.append(balanced(probe(x[~train]), y[~train]))
        print(f"{name}: a linear probe of the image embedding tells one part coloured from the whole chair at "
              f"{figures[0]:.2f}, the seat coloured from the back at {figures[1]:.2f} (balanced, held-out chairs)")


if __name__ == "__main__":
    main()
