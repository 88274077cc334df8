"""The README's picture of two attributes the procedural objects were changed to show: a car
without and with a rear wing, and a chair with an upright and a reclined back, as the shipped
CLIPs see them (64 px, framed on the category's box) from the front (azimuth 20 degrees), in
three-quarter view (45) and from the side (80). Before, the wing was 3.5 cm above the boot lid
and backs reclined 12 degrees against 4: a pixel or two apart, and every model was at chance.

    python docs/make_attribute_figure.py --out docs/images/attribute_views.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from make_framing_figure import Args as FramingArgs
from make_framing_figure import find_pair, save_grid, view  # one object search, camera and layout

from clipnerf_ns.data.synth import FRAME_EXTENTS

PAIRS = (("cars", "spoiler", ("no", "yes")), ("chairs", "back_tilt", ("upright", "reclined")))
AZIMUTHS = (20.0, 45.0, 80.0)


@dataclass
class Args(FramingArgs):
    out: Path = Path("docs/images/attribute_views.png")
    """PNG to write."""


def main(args: Args) -> None:
    objects = [(category, obj) for category, question, answers in PAIRS
               for obj in find_pair(category, question, args.seed, answers)]
    save_grid([[view(obj, category, FRAME_EXTENTS[category], args.size, azimuth) for category, obj in objects]
               for azimuth in AZIMUTHS], args)
    print(f"{args.out}: {len(objects)} objects (columns) from azimuths {AZIMUTHS} (rows)")


if __name__ == "__main__":
    main(tyro.cli(Args))
