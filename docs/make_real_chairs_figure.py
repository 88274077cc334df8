"""The README's picture of real chairs as first-class objects: PartNet chairs (`../shared/data/partnet`)
read by `clipnerf render-meshes`, each part in a named colour, with the longest of its first three captions and
the attributes measured on its labelled parts (grey), framed on the chairs' box as the CLIPs see them.

    python docs/make_real_chairs_figure.py --out docs/images/real_chairs.png
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import tyro
from make_framing_figure import view  # one camera and framing for the README's figures
from PIL import Image, ImageDraw

from clipnerf_ns.data.meshes import discover_meshes, load_object
from clipnerf_ns.data.synth import FRAME_EXTENTS

CHAIRS = ("1325", "2320", "39426", "309", "37658", "40096", "42663", "45075")


@dataclass
class Args:
    partnet: Path = Path("../shared/data/partnet")
    """Folder of PartNet chair folders (each with its result.json)."""
    out: Path = Path("docs/images/real_chairs.png")
    """PNG to write."""
    size: int = 192
    """Side of each view in pixels."""
    seed: int = 3
    """Seed of the part colours and captions."""


def _facts(a: dict) -> str:
    legs = {None: "no legs named", "pedestal": "star base"}.get(a["leg_style"], f"{a['leg_count']} {a['leg_style']} legs")
    tilt = "?" if a["back_tilt"] is None else str(int(round(a["back_tilt"])))
    return f"{a['back_style']} back reclined {tilt} deg; {'arms' if a['armrests'] else 'no arms'}; {legs}"


def main(args: Args) -> None:
    sources = {s.object_id: s for s in discover_meshes(args.partnet)}
    lines, width = 7, args.size
    sheet = Image.new("RGB", (width * len(CHAIRS), width + 14 * lines), "white")
    draw = ImageDraw.Draw(sheet)
    for i, object_id in enumerate(CHAIRS):
        mesh, a, captions = load_object(sources[object_id], np.random.default_rng([args.seed, i]))
        tile = view(SimpleNamespace(mesh=mesh), "chairs", FRAME_EXTENTS["chairs"], args.size)
        sheet.paste(Image.fromarray((tile * 255).round().astype(np.uint8)), (i * width, 0))
        caption = textwrap.wrap(max(captions[:3], key=len), width // 6)[:4]
        facts = textwrap.wrap(_facts(a), width // 6)
        for k, line in enumerate(caption + facts):
            draw.text((i * width + 4, width + 14 * k), line, fill="black" if k < len(caption) else (110, 110, 110))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"{args.out}: {len(CHAIRS)} real chairs, their first captions and measured attributes")


if __name__ == "__main__":
    main(tyro.cli(Args))
