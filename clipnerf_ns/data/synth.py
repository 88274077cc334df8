"""Procedural categories: parametric chair and car meshes with true attributes and captions.

Conventions
-----------
The world is z-up. Every object lies inside the unit box [-0.5, 0.5]^3, stands on the floor
z = -0.5 and is centred in x and y. Each category uses ONE fixed world scale (objects are never
normalised to fill the box), so "a tall back" or "a long car" is a real size difference.

- Chairs: the seat is centred at x = y = 0. The front of the seat (where one sits) faces +x;
  the back rises from the -x edge of the seat and reclines towards -x.
- Cars: the body spans x in [-L/2, L/2] with the front (hood, windshield) towards +x. Wheels
  are cylinders with their axis along y and touch the floor.

Attributes are JSON-serialisable (floats rounded to 3 decimals) and lengths are world units
that describe the geometry exactly; the mesh is built from the rounded values:

- chair: seat top at z = -0.5 + seat_height; highest point at -0.5 + seat_height + back_height.
  leg_count is the number of floor contacts (5 for the star feet of a pedestal base).
- car: x extent = body_length, y extent = body_width (wheels and rims included), highest point
  at z = -0.5 + roof_height, beltline (top of the lower body) at z = -0.5 + body_height.

Captions come from two disjoint template sets ("default" and "alt"), so an evaluator CLIP
can be trained on one set and the editor prompted with the other.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from clipnerf_ns.data.synth_cars import generate_car, sample_car_attributes
from clipnerf_ns.data.synth_chairs import generate_chair, sample_chair_attributes
from clipnerf_ns.data.synth_parts import CATEGORIES, GENERATOR_VERSION, ProceduralObject

FRAME_EXTENTS: dict[str, tuple[float, float, float]] = {"chairs": (0.7, 0.7, 1.0), "cars": (0.97, 0.45, 0.73)}
"""The largest (x, y, z) extent of each category's objects (over 1500 draws: 0.69 0.67 0.98 and
0.96 0.44 0.72): views framed on a box of this size keep the objects' sizes (`render.framing_corners`)."""


_GENERATORS: dict[str, Callable[[np.random.Generator, int], ProceduralObject]] = {
    "chairs": generate_chair,
    "cars": generate_car,
}


def sample_attributes(category: str, rng: np.random.Generator, version: int = GENERATOR_VERSION) -> dict:
    """Only the attributes of a random object (cheap: no mesh), e.g. for statistics or prompts."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    return sample_chair_attributes(rng, version) if category == "chairs" else sample_car_attributes(rng, version)


def sample_object(category: str, rng: np.random.Generator, version: int = GENERATOR_VERSION) -> ProceduralObject:
    """One random object of a category ("chairs" or "cars"), as generator `version` makes it
    (`synth_parts.GENERATOR_VERSION`)."""
    if category not in _GENERATORS:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    return _GENERATORS[category](rng, version)
