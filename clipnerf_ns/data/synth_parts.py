"""Building blocks of the procedural categories: named colours and their shades, random draws
rounded as the attributes store them, and mesh primitives (boxes, cylinders, hulls, wheels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from clipnerf_ns.data.render import ColoredMesh

CATEGORIES = ("chairs", "cars")
GENERATOR_VERSION = 2
"""Version of the procedural generator. 1: collections written before December 2026 (backs
recline 0 to 18 degrees; a low rear wing on half the sports cars). 2: backs recline 0 to 26
degrees, and the rear wing stands on struts, on half the sports cars and 30% of sedans and
hatchbacks (at 64 px both were a pixel or two, and no model could see them). A collection records
its version, so a shipped model's collection regenerates as it was."""
TEMPLATE_SETS = ("default", "alt")

# Well separated sRGB anchors (min pairwise distance ~0.3) so a small per-object shade
# variation never changes which name is nearest.
NAMED_COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "orange": (1.00, 0.55, 0.05),
    "yellow": (0.95, 0.85, 0.10),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.10, 0.25, 0.85),
    "purple": (0.50, 0.15, 0.65),
    "pink": (1.00, 0.50, 0.75),
    "brown": (0.50, 0.30, 0.12),
    "black": (0.06, 0.06, 0.06),
    "white": (0.95, 0.95, 0.95),
    "gray": (0.50, 0.50, 0.50),
    "teal": (0.05, 0.55, 0.55),
}

COLOR_SYNONYMS: dict[str, list[str]] = {
    "red": ["red", "scarlet", "crimson"],
    "orange": ["orange", "tangerine"],
    "yellow": ["yellow", "golden yellow", "lemon yellow"],
    "green": ["green", "emerald green", "grass green"],
    "blue": ["blue", "navy blue", "royal blue"],
    "purple": ["purple", "violet", "plum"],
    "pink": ["pink", "rose pink", "hot pink"],
    "brown": ["brown", "chestnut", "walnut brown"],
    "black": ["black", "jet black", "ebony"],
    "white": ["white", "snow white", "ivory"],
    "gray": ["gray", "grey", "silver"],
    "teal": ["teal", "turquoise", "cyan"],
}

FURNITURE_LEG_COLORS = ("brown", "black", "gray", "white")
GLASS_COLORS = ("black", "gray", "teal")
RIM_COLORS = ("gray", "white", "black")



@dataclass
class ProceduralObject:
    """One generated object: coloured mesh, ground-truth attributes, captions."""

    mesh: ColoredMesh
    attributes: dict
    captions: list[str]


# ----------------------------------------------------------------------------- colours


def nearest_color_name(rgb: np.ndarray | tuple[float, float, float]) -> str:
    """Name of the NAMED_COLORS entry nearest to an sRGB colour (Euclidean)."""
    names = list(NAMED_COLORS)
    anchors = np.array([NAMED_COLORS[n] for n in names])
    return names[int(np.argmin(np.linalg.norm(anchors - np.asarray(rgb)[None], axis=1)))]


def shade(name: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """A slightly varied shade of a named colour whose nearest name is still `name`."""
    base = np.array(NAMED_COLORS[name])
    for scale in (0.05, 0.025, 0.0):  # shrink the jitter until the name stays true
        rgb = np.clip(base + rng.uniform(-scale, scale, 3), 0.0, 1.0)
        if nearest_color_name(rgb) == name:
            return tuple(float(c) for c in rgb)
    return tuple(float(c) for c in base)


def pick(rng: np.random.Generator, options, p=None) -> str:
    """rng.choice that returns a plain Python str (numpy str_ is not what JSON users expect)."""
    return str(options[int(rng.choice(len(options), p=p))])


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Uniform sample rounded to 3 decimals: the geometry is built from the stored value."""
    return round(float(rng.uniform(lo, hi)), 3)


# ----------------------------------------------------------------------------- primitives

Part = tuple[trimesh.Trimesh, tuple[float, float, float]]


def box(lo, hi) -> trimesh.Trimesh:
    """Axis-aligned box from its min and max corners."""
    return trimesh.creation.box(bounds=np.array([lo, hi], dtype=float))


def vertical_cylinder(x: float, y: float, z0: float, z1: float, radius: float, sections: int = 16) -> trimesh.Trimesh:
    """Vertical cylinder with flat caps at z0 and z1 exactly."""
    return trimesh.creation.cylinder(radius=radius, segment=[[x, y, z0], [x, y, z1]], sections=sections)


def hull(points) -> trimesh.Trimesh:
    """Convex hull of a point set: tapered and slanted solids from a few vertices."""
    return trimesh.convex.convex_hull(np.asarray(points, dtype=float))


def slanted_rod(bottom, top, radius: float, sections: int = 12) -> trimesh.Trimesh:
    """Rod between two points with horizontal caps, so a splayed leg stands exactly on the floor."""
    a = 2 * np.pi * np.arange(sections) / sections
    ring = np.stack([radius * np.cos(a), radius * np.sin(a), np.zeros(sections)], axis=1)
    return hull(np.concatenate([ring + np.asarray(bottom), ring + np.asarray(top)]))


def wheel(center, axis, radius: float, width: float, sections: int = 20) -> trimesh.Trimesh:
    """Disc with a horizontal axis; one rim vertex points straight down so it touches the floor."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    down = np.array([0.0, 0.0, -1.0])
    side = np.cross(axis, down)
    a = 2 * np.pi * np.arange(sections) / sections
    ring = radius * (np.cos(a)[:, None] * down + np.sin(a)[:, None] * side)
    c = np.asarray(center, dtype=float)
    return hull(np.concatenate([c + ring - axis * width / 2, c + ring + axis * width / 2]))


def shear_x(mesh: trimesh.Trimesh, z0: float, tilt_deg: float) -> trimesh.Trimesh:
    """Recline towards -x by shearing about the plane z = z0 (heights are preserved exactly)."""
    t = np.tan(np.radians(tilt_deg))
    m = np.eye(4)
    m[0, 2], m[0, 3] = -t, t * z0
    mesh.apply_transform(m)
    return mesh
