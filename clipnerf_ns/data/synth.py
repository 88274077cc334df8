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

from dataclasses import dataclass
from typing import Callable

import numpy as np
import trimesh

from clipnerf_ns.data.render import ColoredMesh

CATEGORIES = ("chairs", "cars")
FRAME_EXTENTS: dict[str, tuple[float, float, float]] = {"chairs": (0.7, 0.7, 1.0), "cars": (0.97, 0.45, 0.73)}
"""The largest (x, y, z) extent of each category's objects (over 1500 draws: 0.69 0.67 0.98 and
0.96 0.44 0.72): views framed on a box of this size keep the objects' sizes (`render.framing_corners`)."""
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

# Every caption contains one of these (or a colour synonym); the test relies on it.
CATEGORY_NOUNS: dict[str, tuple[str, ...]] = {
    "chairs": ("chair", "stool", "armchair", "arm chair"),
    "cars": (
        "car", "sedan", "saloon", "hatchback", "hatch", "suv", "crossover", "4x4", "vehicle",
        "pickup", "pick-up", "truck", "van", "minivan", "minibus", "people carrier", "coupe",
        "supercar",
    ),
}

_FURNITURE_LEG_COLORS = ("brown", "black", "gray", "white")
_GLASS_COLORS = ("black", "gray", "teal")
_RIM_COLORS = ("gray", "white", "black")


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


def _shade(name: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """A slightly varied shade of a named colour whose nearest name is still `name`."""
    base = np.array(NAMED_COLORS[name])
    for scale in (0.05, 0.025, 0.0):  # shrink the jitter until the name stays true
        rgb = np.clip(base + rng.uniform(-scale, scale, 3), 0.0, 1.0)
        if nearest_color_name(rgb) == name:
            return tuple(float(c) for c in rgb)
    return tuple(float(c) for c in base)


def _pick(rng: np.random.Generator, options, p=None) -> str:
    """rng.choice that returns a plain Python str (numpy str_ is not what JSON users expect)."""
    return str(options[int(rng.choice(len(options), p=p))])


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Uniform sample rounded to 3 decimals: the geometry is built from the stored value."""
    return round(float(rng.uniform(lo, hi)), 3)


# ----------------------------------------------------------------------------- primitives

Part = tuple[trimesh.Trimesh, tuple[float, float, float]]


def _box(lo, hi) -> trimesh.Trimesh:
    """Axis-aligned box from its min and max corners."""
    return trimesh.creation.box(bounds=np.array([lo, hi], dtype=float))


def _vcyl(x: float, y: float, z0: float, z1: float, radius: float, sections: int = 16) -> trimesh.Trimesh:
    """Vertical cylinder with flat caps at z0 and z1 exactly."""
    return trimesh.creation.cylinder(radius=radius, segment=[[x, y, z0], [x, y, z1]], sections=sections)


def _hull(points) -> trimesh.Trimesh:
    """Convex hull of a point set: tapered and slanted solids from a few vertices."""
    return trimesh.convex.convex_hull(np.asarray(points, dtype=float))


def _slanted_rod(bottom, top, radius: float, sections: int = 12) -> trimesh.Trimesh:
    """Rod between two points with horizontal caps, so a splayed leg stands exactly on the floor."""
    a = 2 * np.pi * np.arange(sections) / sections
    ring = np.stack([radius * np.cos(a), radius * np.sin(a), np.zeros(sections)], axis=1)
    return _hull(np.concatenate([ring + np.asarray(bottom), ring + np.asarray(top)]))


def _wheel(center, axis, radius: float, width: float, sections: int = 20) -> trimesh.Trimesh:
    """Disc with a horizontal axis; one rim vertex points straight down so it touches the floor."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    down = np.array([0.0, 0.0, -1.0])
    side = np.cross(axis, down)
    a = 2 * np.pi * np.arange(sections) / sections
    ring = radius * (np.cos(a)[:, None] * down + np.sin(a)[:, None] * side)
    c = np.asarray(center, dtype=float)
    return _hull(np.concatenate([c + ring - axis * width / 2, c + ring + axis * width / 2]))


def _shear_x(mesh: trimesh.Trimesh, z0: float, tilt_deg: float) -> trimesh.Trimesh:
    """Recline towards -x by shearing about the plane z = z0 (heights are preserved exactly)."""
    t = np.tan(np.radians(tilt_deg))
    m = np.eye(4)
    m[0, 2], m[0, 3] = -t, t * z0
    mesh.apply_transform(m)
    return mesh


# ----------------------------------------------------------------------------- chairs


def _sample_chair_attributes(rng: np.random.Generator) -> dict:
    """Draw a chair's parameters; correlations (office chairs, stools) keep them plausible."""
    leg_style = _pick(rng, ["straight", "round", "splayed", "pedestal"], p=[0.3, 0.25, 0.25, 0.2])
    back_style = _pick(rng, ["solid", "slatted", "none"], p=[0.4, 0.35, 0.25])
    if leg_style == "pedestal" and back_style == "slatted":
        back_style = "solid"  # slatted office chairs look wrong
    stool = back_style == "none"
    seat_shape = _pick(rng, ["round", "rectangular"], p=[0.6, 0.4] if stool else [0.2, 0.8])
    a: dict = {"category": "chairs", "seat_shape": seat_shape}
    a["seat_width"] = _u(rng, 0.3, 0.5) if seat_shape == "round" else _u(rng, 0.34, 0.58)
    a["seat_depth"] = a["seat_width"] if seat_shape == "round" else _u(rng, 0.34, 0.54)
    a["seat_height"] = _u(rng, 0.35, 0.68) if stool else _u(rng, 0.32, 0.52)
    a["seat_thickness"] = _u(rng, 0.05, 0.09) if leg_style == "pedestal" else _u(rng, 0.025, 0.07)
    a.update(_sample_back(rng, back_style, a))
    a.update(_sample_legs(rng, leg_style, seat_shape))
    a["armrests"] = bool(not stool and rng.random() < (0.6 if leg_style == "pedestal" else 0.35))
    # Armrests stay clearly below the top of the back so the back is the highest part.
    a["arm_height"] = min(_u(rng, 0.15, 0.24), round(a["back_height"] - 0.05, 3)) if a["armrests"] else 0.0
    a.update(_sample_chair_colors(rng, stool, a["armrests"]))
    a["kind"] = _chair_kind(a)
    return a


def _sample_back(rng: np.random.Generator, style: str, a: dict) -> dict:
    if style == "none":
        return {"back_style": "none", "back_height": 0.0, "back_tilt": 0.0, "back_thickness": 0.0,
                "back_width": 0.0, "back_top_scale": 1.0, "slat_count": 0, "slat_orientation": "none"}
    frac = (0.6, 0.8) if a["seat_shape"] == "round" else (0.8, 1.0)
    return {
        "back_style": style,
        # total height stays <= 0.98 so the chair fits the unit box
        "back_height": min(_u(rng, 0.22, 0.48), round(0.98 - a["seat_height"], 3)),
        "back_tilt": _u(rng, 0.0, 18.0),
        "back_thickness": _u(rng, 0.025, 0.05),
        "back_width": round(a["seat_width"] * float(rng.uniform(*frac)), 3),
        "back_top_scale": _u(rng, 0.85, 1.15) if style == "solid" else 1.0,
        "slat_count": int(rng.integers(2, 6)) if style == "slatted" else 0,
        "slat_orientation": _pick(rng, ["vertical", "horizontal"]) if style == "slatted" else "none",
    }


def _sample_legs(rng: np.random.Generator, style: str, seat_shape: str) -> dict:
    if style == "pedestal":
        count = 5
    elif seat_shape == "round":
        count = int(rng.choice([3, 4]))
    else:
        count = 4
    return {
        "leg_style": style,
        "leg_count": count,
        "leg_thickness": _u(rng, 0.025, 0.06),
        "leg_splay": _u(rng, 5.0, 12.0) if style == "splayed" else 0.0,
        "stretchers": bool(style in ("straight", "round") and rng.random() < 0.4),
        "base_radius": _u(rng, 0.2, 0.27) if style == "pedestal" else 0.0,
    }


def _sample_chair_colors(rng: np.random.Generator, stool: bool, armrests: bool) -> dict:
    """Typical schemes: one colour overall, or upholstery (seat/back) over wood/metal legs."""
    names = list(NAMED_COLORS)
    seat = _pick(rng, names)
    if rng.random() < 0.25:
        back, leg = seat, seat
    else:
        back = seat if rng.random() < 0.75 else _pick(rng, [n for n in names if n != seat])
        if rng.random() < 0.8:
            leg = _pick(rng, [n for n in _FURNITURE_LEG_COLORS if n != seat] or names)
        else:
            leg = _pick(rng, [n for n in names if n != seat])
    return {
        "seat_color": seat,
        "back_color": None if stool else back,
        "leg_color": leg,
        "arm_color": _pick(rng, [seat, leg]) if armrests else None,
    }


def _chair_kind(a: dict) -> str:
    if a["back_style"] == "none":
        return "stool"
    if a["leg_style"] == "pedestal":
        return "office chair"
    return "armchair" if a["armrests"] else "dining chair"


def _leg_anchors(a: dict) -> np.ndarray:
    """(n, 2) leg tops under the seat, in order around the seat (adjacent = neighbours)."""
    inset = a["leg_thickness"] / 2 + 0.02
    n = a["leg_count"]
    if a["seat_shape"] == "round":
        r = a["seat_width"] / 2 - inset
        ang = 2 * np.pi * np.arange(n) / n + (0.0 if n == 3 else np.pi / 4)  # 3 legs: one in front
        return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
    x, y = a["seat_depth"] / 2 - inset, a["seat_width"] / 2 - inset
    return np.array([[x, y], [-x, y], [-x, -y], [x, -y]])


def _chair_seat(a: dict, z_top: float, color) -> list[Part]:
    z_bot = z_top - a["seat_thickness"]
    if a["seat_shape"] == "round":
        return [(_vcyl(0, 0, z_bot, z_top, a["seat_width"] / 2, sections=24), color)]
    w, d = a["seat_width"], a["seat_depth"]
    return [(_box([-d / 2, -w / 2, z_bot], [d / 2, w / 2, z_top]), color)]


def _chair_legs(a: dict, z_top: float, color) -> list[Part]:
    if a["leg_style"] == "pedestal":
        return _pedestal(a, z_top, color)
    z_attach = z_top - a["seat_thickness"] / 2  # legs reach into the seat: no visible gap
    t = a["leg_thickness"]
    anchors = _leg_anchors(a)
    parts: list[Part] = []
    for x, y in anchors:
        if a["leg_style"] == "straight":
            leg = _box([x - t / 2, y - t / 2, -0.5], [x + t / 2, y + t / 2, z_attach])
        elif a["leg_style"] == "round":
            leg = _vcyl(x, y, -0.5, z_attach, t / 2)
        else:  # splayed: the foot moves outwards, radially from the seat centre
            out = np.array([x, y]) / np.linalg.norm([x, y])
            foot = np.array([x, y]) + out * np.tan(np.radians(a["leg_splay"])) * (z_attach + 0.5)
            leg = _slanted_rod([foot[0], foot[1], -0.5], [x, y, z_attach], t / 2)
        parts.append((leg, color))
    if a["stretchers"]:
        z_s = -0.5 + 0.3 * (z_attach + 0.5)
        for i in range(len(anchors)):
            p, q = anchors[i], anchors[(i + 1) % len(anchors)]
            rod = trimesh.creation.cylinder(radius=t * 0.3, segment=[[*p, z_s], [*q, z_s]], sections=10)
            parts.append((rod, color))
    return parts


def _pedestal(a: dict, z_top: float, color) -> list[Part]:
    """Central column on a five-star base with casters touching the floor."""
    caster_r, foot_h = 0.022, 0.03
    z_hub = -0.5 + 2 * caster_r + foot_h
    col_r = 0.6 * a["leg_thickness"] + 0.012
    parts: list[Part] = [(_vcyl(0, 0, z_hub - foot_h, z_top - a["seat_thickness"] / 2, col_r), color)]
    rad = a["base_radius"]
    for k in range(5):
        ang = 2 * np.pi * k / 5
        rot = trimesh.transformations.rotation_matrix(ang, [0, 0, 1])
        foot = _box([0.0, -0.02, z_hub - foot_h], [rad, 0.02, z_hub])
        foot.apply_transform(rot)
        c, s = np.cos(ang), np.sin(ang)
        centre = [(rad - 0.015) * c, (rad - 0.015) * s, -0.5 + caster_r]
        parts += [(foot, color), (_wheel(centre, [-s, c, 0.0], caster_r, 0.02, sections=12), color)]
    return parts


def _chair_back(a: dict, z_top: float, color) -> list[Part]:
    if a["back_style"] == "none":
        return []
    bw, bt, top = a["back_width"], a["back_thickness"], z_top + a["back_height"]
    if a["seat_shape"] == "round":  # sit on the circle where a chord of the back's width meets it
        r = a["seat_width"] / 2
        x_r = -np.sqrt(max(r * r - (bw / 2) ** 2, 0.0))
    else:
        x_r = -a["seat_depth"] / 2
    x_r -= 0.003  # just behind the seat's rear face: avoids coplanar faces
    z0 = z_top - a["seat_thickness"] / 2
    if a["back_style"] == "solid":
        tw = bw * a["back_top_scale"]
        pts = [[x, s * w / 2, z] for x in (x_r, x_r + bt) for s in (-1, 1) for w, z in ((bw, z0), (tw, top))]
        meshes = [_hull(pts)]
    else:
        meshes = _slatted_back(a, x_r, z0, z_top, top)
    return [(_shear_x(m, z_top, a["back_tilt"]), color) for m in meshes]


def _slatted_back(a: dict, x_r: float, z0: float, z_top: float, top: float) -> list[trimesh.Trimesh]:
    """Two posts and a top rail, with vertical slats or horizontal (ladder) rails between them."""
    bw, bt, n = a["back_width"], a["back_thickness"], a["slat_count"]
    pw, rail_h = 0.03, min(0.07, 0.25 * a["back_height"])
    x0, x1 = x_r, x_r + bt
    meshes = []
    for s in (-1, 1):
        y0, y1 = sorted((s * bw / 2, s * (bw / 2 - pw)))
        meshes.append(_box([x0, y0, z0], [x1, y1, top]))
    meshes.append(_box([x0, -bw / 2, top - rail_h], [x1, bw / 2, top]))
    inner = bw / 2 - pw
    xs0, xs1 = x0 + 0.2 * bt, x1 - 0.2 * bt  # slats are thinner than the frame
    if a["slat_orientation"] == "vertical":
        sw = min(0.04, 2 * inner / (2 * n + 1))
        for y in np.linspace(-inner, inner, n + 2)[1:-1]:
            meshes.append(_box([xs0, y - sw / 2, z_top], [xs1, y + sw / 2, top - rail_h]))
    else:
        for z in np.linspace(z_top + 0.04, top - rail_h, n + 1)[:-1]:
            meshes.append(_box([xs0, -inner, z], [xs1, inner, z + 0.03]))
    return meshes


def _chair_arms(a: dict, z_top: float, color) -> list[Part]:
    if not a["armrests"]:
        return []
    ah, aw, at = a["arm_height"], 0.045, 0.03
    half = a["seat_width"] / 2 * (0.85 if a["seat_shape"] == "round" else 1.0)
    x_front = a["seat_depth"] / 2 * (0.8 if a["seat_shape"] == "round" else 1.0) - 0.01
    x_back = -a["seat_depth"] / 2 - np.tan(np.radians(a["back_tilt"])) * ah  # meets the reclined back
    # office chairs hold the arm on a central post, others on a front post
    x_post = 0.0 if a["leg_style"] == "pedestal" else x_front - aw / 2
    parts: list[Part] = []
    for s in (-1, 1):
        y0, y1 = sorted((s * half, s * (half - aw)))
        parts.append((_box([x_back, y0, z_top + ah - at], [x_front, y1, z_top + ah]), color))
        parts.append((_box([x_post - aw * 0.35, y0 + 0.008, z_top - a["seat_thickness"] / 2],
                           [x_post + aw * 0.35, y1 - 0.008, z_top + ah - at]), color))
    return parts


def _build_chair(a: dict, rng: np.random.Generator) -> ColoredMesh:
    z_top = -0.5 + a["seat_height"]
    seat = _shade(a["seat_color"], rng)
    leg = seat if a["leg_color"] == a["seat_color"] else _shade(a["leg_color"], rng)
    back = seat if a["back_color"] in (None, a["seat_color"]) else _shade(a["back_color"], rng)
    arm = {a["seat_color"]: seat, a["leg_color"]: leg}.get(a["arm_color"], seat)
    parts = (_chair_seat(a, z_top, seat) + _chair_legs(a, z_top, leg)
             + _chair_back(a, z_top, back) + _chair_arms(a, z_top, arm))
    return ColoredMesh.from_parts(parts)


def generate_chair(rng: np.random.Generator) -> ProceduralObject:
    """A random chair, stool, armchair or office chair with its attributes and captions."""
    a = _sample_chair_attributes(rng)
    mesh = _build_chair(a, rng)
    return ProceduralObject(mesh, a, make_captions("chairs", a, rng))


# ----------------------------------------------------------------------------- cars

# Per-style ranges. Lengths in world units; wheel clearance in wheel radii; cabin_* are
# fractions of the body length: rear gap, base length, rear slope, windshield slope.
_CAR_STYLES: dict[str, dict[str, tuple[float, float]]] = {
    "sedan": dict(length=(0.78, 0.92), width=(0.34, 0.40), body=(0.20, 0.25), roof=(0.36, 0.42),
                  wheel=(0.065, 0.08), clearance=(0.45, 0.6), cabin_rear=(0.2, 0.26),
                  cabin_len=(0.45, 0.52), rear_slope=(0.1, 0.14), wind_slope=(0.12, 0.16)),
    "hatchback": dict(length=(0.58, 0.72), width=(0.32, 0.37), body=(0.20, 0.25), roof=(0.38, 0.46),
                      wheel=(0.06, 0.075), clearance=(0.45, 0.6), cabin_rear=(0.02, 0.05),
                      cabin_len=(0.6, 0.68), rear_slope=(0.05, 0.1), wind_slope=(0.14, 0.18)),
    "suv": dict(length=(0.78, 0.92), width=(0.38, 0.44), body=(0.28, 0.34), roof=(0.50, 0.60),
                wheel=(0.085, 0.11), clearance=(0.7, 0.9), cabin_rear=(0.02, 0.04),
                cabin_len=(0.66, 0.72), rear_slope=(0.02, 0.05), wind_slope=(0.08, 0.12)),
    "pickup": dict(length=(0.84, 0.96), width=(0.38, 0.44), body=(0.27, 0.32), roof=(0.46, 0.55),
                   wheel=(0.085, 0.105), clearance=(0.7, 0.9), cabin_rear=(0.4, 0.46),
                   cabin_len=(0.26, 0.3), rear_slope=(0.02, 0.03), wind_slope=(0.06, 0.09)),
    "van": dict(length=(0.80, 0.94), width=(0.38, 0.44), body=(0.24, 0.30), roof=(0.60, 0.72),
                wheel=(0.07, 0.085), clearance=(0.5, 0.7), cabin_rear=(0.01, 0.02),
                cabin_len=(0.8, 0.86), rear_slope=(0.01, 0.02), wind_slope=(0.1, 0.14)),
    "sports": dict(length=(0.80, 0.92), width=(0.36, 0.42), body=(0.15, 0.19), roof=(0.27, 0.32),
                   wheel=(0.07, 0.085), clearance=(0.3, 0.45), cabin_rear=(0.2, 0.26),
                   cabin_len=(0.4, 0.46), rear_slope=(0.14, 0.18), wind_slope=(0.15, 0.2)),
}


def _sample_car_attributes(rng: np.random.Generator) -> dict:
    style = _pick(rng, list(_CAR_STYLES))
    r = _CAR_STYLES[style]
    a: dict = {"category": "cars", "body_style": style}
    for key, name in (("length", "body_length"), ("width", "body_width"), ("body", "body_height"),
                      ("roof", "roof_height"), ("wheel", "wheel_radius")):
        a[name] = _u(rng, *r[key])
    L = a["body_length"]
    a["wheel_width"] = _u(rng, 0.045, 0.065)
    a["wheel_count"] = 4
    a["ground_clearance"] = round(a["wheel_radius"] * float(rng.uniform(*r["clearance"])), 3)
    a["cabin_rear"] = round(L * float(rng.uniform(*r["cabin_rear"])), 3)
    a["cabin_length"] = round(L * float(rng.uniform(*r["cabin_len"])), 3)
    a["cabin_rear_slope"] = round(L * float(rng.uniform(*r["rear_slope"])), 3)
    a["windshield_slope"] = round(L * float(rng.uniform(*r["wind_slope"])), 3)
    a["cabin_height"] = round(a["roof_height"] - a["body_height"], 3)
    # axles: overhangs at least a wheel radius so wheels stay inside the body length
    a["front_overhang"] = round(max(L * float(rng.uniform(0.13, 0.18)), a["wheel_radius"] + 0.02), 3)
    a["rear_overhang"] = round(max(L * float(rng.uniform(0.13, 0.2)), a["wheel_radius"] + 0.02), 3)
    a["spoiler"] = bool(style == "sports" and rng.random() < 0.5)
    a["open_bed"] = style == "pickup"
    a["body_color"] = _pick(rng, list(NAMED_COLORS))
    # glass of the body's own colour would make the windows vanish
    a["window_color"] = _pick(rng, [c for c in _GLASS_COLORS if c != a["body_color"]])
    a["wheel_color"] = "black"
    a["rim_color"] = _pick(rng, _RIM_COLORS)
    a["kind"] = {"sports": "sports car", "pickup": "pickup truck"}.get(style, style)
    return a


def _car_body(a: dict, rng: np.random.Generator, color) -> list[Part]:
    """Lower body: a side profile with sloped nose/tail and bevelled bottom, extruded along y."""
    L = a["body_length"]
    zb, zt = -0.5 + a["ground_clearance"], -0.5 + a["body_height"]
    h = zt - zb
    nose_drop, nose_len = h * float(rng.uniform(0.2, 0.4)), L * float(rng.uniform(0.04, 0.08))
    tail_drop = 0.0 if a["open_bed"] else h * float(rng.uniform(0.1, 0.25))
    tail_len = 0.0 if a["open_bed"] else L * float(rng.uniform(0.02, 0.05))
    bev = min(0.03, 0.3 * h)
    profile = [(-L / 2, zb + bev), (-L / 2 + bev, zb), (L / 2 - bev, zb), (L / 2, zb + bev),
               (L / 2, zt - nose_drop), (L / 2 - nose_len, zt), (-L / 2 + tail_len, zt),
               (-L / 2, zt - tail_drop)]
    hw = _body_half_width(a)
    pts = [[x, s * (hw if z < zt - 1e-9 else hw - 0.012), z] for x, z in profile for s in (-1, 1)]
    return [(_hull(pts), color)]


def _body_half_width(a: dict) -> float:
    # wheels stick out a little past the body so they read as wheels from the side
    return a["body_width"] / 2 - 0.25 * a["wheel_width"]


def _car_cabin(a: dict, body_color, glass_color) -> list[Part]:
    """Tapered body-coloured cabin (trapezoid prism) wrapped by a band of glass windows."""
    L = a["body_length"]
    z0, z1 = -0.5 + a["body_height"] - 0.005, -0.5 + a["roof_height"]  # base just inside the body
    xb0 = -L / 2 + a["cabin_rear"]
    xb1 = xb0 + a["cabin_length"]
    xr0, xr1 = xb0 + a["cabin_rear_slope"], xb1 - a["windshield_slope"]
    base_hw = _body_half_width(a) - 0.02
    roof_hw = base_hw * 0.85

    def section(z: float, grow: float = 0.0) -> list[list[float]]:
        """The cabin's horizontal cross-section at height z, grown outwards by `grow`."""
        f = (z - z0) / (z1 - z0)
        x_rear, x_front = xb0 + f * (xr0 - xb0) - grow, xb1 + f * (xr1 - xb1) + grow
        hw = base_hw + f * (roof_hw - base_hw) + grow
        return [[x, s * hw, z] for x in (x_rear, x_front) for s in (-1, 1)]

    h = z1 - z0
    # vans and SUVs show more body panel below the windows; the roof rail stays body coloured
    g0 = z0 + (0.35 if a["body_style"] in ("van", "suv") else 0.2) * h
    g1 = z1 - max(0.012, 0.12 * h)
    glass = _hull(section(g0, 0.003) + section(g1, 0.003))  # 3 mm proud: never coplanar
    return [(_hull(section(z0) + section(z1)), body_color), (glass, glass_color)]


def _car_wheels(a: dict, tyre_color, rim_color) -> list[Part]:
    L, W, r, ww = a["body_length"], a["body_width"], a["wheel_radius"], a["wheel_width"]
    parts: list[Part] = []
    for x in (L / 2 - a["front_overhang"], -L / 2 + a["rear_overhang"]):
        for s in (-1, 1):
            # tyre's outer face 3 mm inside the rim's so the two never share a plane
            yc = s * (W / 2 - 0.003 - ww / 2)
            parts.append((_wheel([x, yc, -0.5 + r], [0, 1, 0], r, ww), tyre_color))
            rim_c = [x, s * (W / 2 - 0.005), -0.5 + r]
            parts.append((_wheel(rim_c, [0, 1, 0], 0.6 * r, 0.01, sections=16), rim_color))
    return parts


def _car_extras(a: dict, color) -> list[Part]:
    """Pickup bed walls and tailgate; sports spoiler. All body coloured and below the roof."""
    L = a["body_length"]
    zt = -0.5 + a["body_height"]
    hw = _body_half_width(a) - 0.012  # the body's top edge is slightly narrower
    parts: list[Part] = []
    if a["open_bed"]:
        x_end, t, wh = -L / 2 + a["cabin_rear"], 0.015, 0.06
        for s in (-1, 1):
            y0, y1 = sorted((s * hw, s * (hw - t)))
            parts.append((_box([-L / 2, y0, zt - 0.005], [x_end, y1, zt + wh]), color))
        parts.append((_box([-L / 2, -hw, zt - 0.005], [-L / 2 + t, hw, zt + wh]), color))
    if a["spoiler"]:
        x0 = -L / 2 + 0.01
        for s in (-1, 1):
            parts.append((_box([x0 + 0.02, s * 0.3 * hw - 0.008, zt - 0.01],
                               [x0 + 0.04, s * 0.3 * hw + 0.008, zt + 0.035]), color))
        parts.append((_box([x0, -0.9 * hw, zt + 0.035], [x0 + 0.08, 0.9 * hw, zt + 0.047]), color))
    return parts


def _build_car(a: dict, rng: np.random.Generator) -> ColoredMesh:
    body = _shade(a["body_color"], rng)
    glass = _shade(a["window_color"], rng)
    tyre = _shade(a["wheel_color"], rng)
    rim = _shade(a["rim_color"], rng)
    parts = (_car_body(a, rng, body) + _car_cabin(a, body, glass)
             + _car_wheels(a, tyre, rim) + _car_extras(a, body))
    return ColoredMesh.from_parts(parts)


def generate_car(rng: np.random.Generator) -> ProceduralObject:
    """A random sedan, hatchback, SUV, pickup, van or sports car with attributes and captions."""
    a = _sample_car_attributes(rng)
    mesh = _build_car(a, rng)
    return ProceduralObject(mesh, a, make_captions("cars", a, rng))


_GENERATORS: dict[str, Callable[[np.random.Generator], ProceduralObject]] = {
    "chairs": generate_chair,
    "cars": generate_car,
}


def sample_attributes(category: str, rng: np.random.Generator) -> dict:
    """Only the attributes of a random object (cheap: no mesh), e.g. for statistics or prompts."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    return _sample_chair_attributes(rng) if category == "chairs" else _sample_car_attributes(rng)


def sample_object(category: str, rng: np.random.Generator) -> ProceduralObject:
    """One random object of a category ("chairs" or "cars")."""
    if category not in _GENERATORS:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    return _GENERATORS[category](rng)


# ----------------------------------------------------------------------------- captions

# Size words apply to the outer thirds of each attribute's distribution. These are the
# empirical terciles of the samplers above (measured on 4000 draws); a test checks that
# each word still covers roughly a third of the objects.
_TERCILES: dict[str, tuple[float, float]] = {
    "back_height": (0.306, 0.39),  # chairs with a back
    "chair_seat_height": (0.387, 0.454),  # chairs with a back
    "stool_seat_height": (0.449, 0.565),  # stools only: a tall stool is taller than a tall chair seat
    "seat_width": (0.401, 0.478),
    "leg_thickness": (0.037, 0.048),
    "body_length": (0.822, 0.88),
    "roof_height": (0.402, 0.527),
    "wheel_radius": (0.074, 0.085),
}


def size_class(key: str, value: float) -> str:
    """'low', 'mid' or 'high' third of an attribute's distribution (see _TERCILES)."""
    lo, hi = _TERCILES[key]
    return "low" if value < lo else ("high" if value > hi else "mid")


@dataclass
class _PartWords:
    """Words for one describable part: adjective slots (synonyms, in English order) and heads."""

    heads: list[str]
    slots: list[list[str]]
    colors: list[str]
    plural: bool = False
    phrases: tuple[str, ...] = ()  # fixed alternatives, e.g. "a back with vertical slats"


@dataclass
class _Facts:
    """What may truthfully be said about one object, in the phrasing of one template set."""

    nouns: list[str]
    color_words: list[str]  # pre-noun colour of the whole (empty when no colour dominates)
    adjectives: list[list[str]]  # other pre-noun adjectives, one synonym list per fact
    parts: list[_PartWords]


def _syn(name: str | None) -> list[str]:
    return list(COLOR_SYNONYMS[name]) if name else []


def _two_way(size: str, high: list[str], low: list[str]) -> list[list[str]]:
    """A slot for an outer-third size, none for the middle third (nothing true to say)."""
    return [] if size == "mid" else [high if size == "high" else low]


def _chair_facts(a: dict, alt: bool) -> _Facts:
    stool = a["back_style"] == "none"
    seat, back = a["seat_color"], a["back_color"]
    adjectives: list[list[str]] = []
    if stool:
        tall = size_class("stool_seat_height", a["seat_height"])
        nouns = ["stool"] + (["bar stool"] if tall == "high" else [])
        adjectives += _two_way(tall, ["tall", "high"], ["short", "low"])
    elif a["kind"] == "office chair":
        nouns = (["office chair", "computer chair", "task chair"] if alt
                 else ["office chair", "swivel chair", "desk chair"])
    elif a["kind"] == "armchair":
        nouns = ["armchair", "arm chair"] if alt else ["armchair", "chair"]
    else:
        nouns = ["chair", "kitchen chair", "dining room chair"] if alt else ["chair", "dining chair", "side chair"]
    one_colour = stool or back == seat  # the seat's colour then names the whole object
    if one_colour and a["leg_color"] == seat == "brown":
        adjectives.append(["wood", "wooden"] if alt else ["wooden"])
    parts = [_seat_words(a, stool, alt)]
    if not stool:
        parts.append(_back_words(a, alt))
    parts += _leg_words(a, alt)
    if a["armrests"]:
        parts.append(_PartWords(["arm rests", "armrests"] if alt else ["armrests", "arms"], [],
                                _syn(a["arm_color"]), plural=True))
    return _Facts(nouns, _syn(seat) if one_colour else [], adjectives, parts)


def _seat_words(a: dict, stool: bool, alt: bool) -> _PartWords:
    slots = _two_way(size_class("seat_width", a["seat_width"]), ["wide", "broad"], ["narrow", "slim"])
    if not stool:
        slots += _two_way(size_class("chair_seat_height", a["seat_height"]), ["high"], ["low"])
    if a["seat_shape"] == "round":
        slots.append(["disc-shaped", "rounded"] if alt else ["round", "circular"])
    return _PartWords(["sitting surface", "seat"] if alt else ["seat"], slots, _syn(a["seat_color"]))


def _back_words(a: dict, alt: bool) -> _PartWords:
    head = "backrest" if alt else "back"
    slots = _two_way(size_class("back_height", a["back_height"]), ["tall", "high"], ["short", "low"])
    if a["back_tilt"] >= 12:
        slots.append(["tilted", "leaning"] if alt else ["reclined", "leaning"])
    elif a["back_tilt"] <= 4:
        slots.append(["vertical"] if alt else ["upright", "straight"])
    phrases: tuple[str, ...] = ()
    if a["back_style"] == "solid":
        slots.append(["full", "solid"] if alt else ["solid", "plain"])
    elif a["slat_orientation"] == "vertical":
        slots.append(["slatted"] if alt else ["slatted", "spindle"])
        phrases = (f"a {head} made of vertical slats",) if alt else ("a back with vertical slats",)
    else:
        slots.append(["ladder-style"] if alt else ["ladder", "slatted"])
        phrases = (f"a {head} made of horizontal slats",) if alt else ("a back with horizontal slats",)
    return _PartWords([head], slots, _syn(a["back_color"]), phrases=phrases)


_NUMBER_WORDS = {3: "three", 4: "four", 5: "five"}


def _leg_words(a: dict, alt: bool) -> list[_PartWords]:
    leg = a["leg_color"]
    colors = _syn(leg) + {"brown": ["wooden"], "gray": ["metal"]}.get(leg, [])
    if a["leg_style"] == "pedestal":
        style = ["star-shaped", "five-spoke"] if alt else ["star", "five-star", "pedestal", "swivel"]
        phrases = ("a central column on star feet",) if alt else ()
        return [_PartWords(["base"], [style], colors, phrases=phrases)]
    slots = [[str(a["leg_count"])] if alt else [_NUMBER_WORDS[a["leg_count"]]]]
    slots += _two_way(size_class("leg_thickness", a["leg_thickness"]),
                      ["sturdy", "heavy"] if alt else ["thick", "chunky"],
                      ["skinny", "delicate"] if alt else ["thin", "slender"])
    slots.append({
        "straight": ["square-section"] if alt else ["square", "straight"],
        "round": ["tubular"] if alt else ["round", "cylindrical"],
        "splayed": ["outward-angled", "spread"] if alt else ["splayed", "angled", "slanted"],
    }[a["leg_style"]])
    parts = [_PartWords(["legs"], slots, colors, plural=True)]
    if a["stretchers"]:
        phrase = "rungs connecting the legs" if alt else "stretchers between the legs"
        parts.append(_PartWords([], [], [], phrases=(phrase,)))
    return parts


_CAR_NOUNS = {
    "sedan": (["sedan", "car", "saloon car"], ["sedan", "four-door car", "saloon"]),
    "hatchback": (["hatchback", "car", "hatchback car"], ["hatchback", "hatch", "five-door hatchback"]),
    "suv": (["suv", "sport utility vehicle", "car"], ["suv", "crossover", "4x4"]),
    "pickup": (["pickup truck", "pickup", "truck"], ["pickup truck", "pick-up", "utility truck"]),
    "van": (["van", "minivan"], ["van", "people carrier", "minibus"]),
    "sports": (["sports car", "race car", "car"], ["sports car", "supercar", "coupe"]),
}


def _car_facts(a: dict, alt: bool) -> _Facts:
    nouns = list(_CAR_NOUNS[a["body_style"]][1 if alt else 0])
    length = size_class("body_length", a["body_length"])
    roof = size_class("roof_height", a["roof_height"])
    adjectives = _two_way(length, ["long"], ["short", "compact", "small"])
    adjectives += _two_way(roof, ["tall", "high-roofed"], ["low", "low-slung"])
    dark = a["window_color"] in ("black", "gray")
    parts = [
        _PartWords(["glass", "windows"] if alt else ["windows"],
                   ([["darkened"]] if alt else [["tinted"]]) if dark else [], _syn(a["window_color"]), plural=True),
        _PartWords(["tyres", "wheels"] if alt else ["wheels", "tires"],
                   _two_way(size_class("wheel_radius", a["wheel_radius"]),
                            ["oversized"] if alt else ["big", "large"], ["tiny"] if alt else ["small"]),
                   _syn(a["wheel_color"]), plural=True),
        _PartWords(["hubcaps", "rims"] if alt else ["rims"], [], _syn(a["rim_color"]), plural=True),
    ]
    if roof != "mid":
        parts.append(_PartWords(["roofline"] if alt else ["roof"],
                                _two_way(roof, ["high"] if alt else ["tall", "high"],
                                         ["low"] if alt else ["low", "flat"]),
                                []))
    if a["spoiler"]:
        parts.append(_PartWords(["rear wing"] if alt else ["spoiler", "rear spoiler"], [], _syn(a["body_color"])))
    if a["open_bed"]:
        parts.append(_PartWords(["cargo box", "load bed"] if alt else ["bed", "cargo bed"], [["open"]], []))
    return _Facts(nouns, _syn(a["body_color"]), adjectives, parts)


def _part_phrase(p: _PartWords, rng: np.random.Generator, alt: bool) -> str:
    """'a tall slatted red back' (default) or 'a tall slatted backrest in red' (alt)."""
    if p.phrases and (not p.heads or rng.random() < 0.25):
        return _pick(rng, p.phrases)
    # a phrase must say something: with no colour to name, at least one adjective is used
    least = 1 if p.slots and not p.colors else 0
    keep = sorted(rng.permutation(len(p.slots))[: int(rng.integers(least, min(2, len(p.slots)) + 1))])
    words = [_pick(rng, p.slots[i]) for i in keep]
    color = _pick(rng, p.colors) if p.colors and (not words or rng.random() < 0.5) else None
    head = _pick(rng, p.heads)
    if alt:
        words = words + [head] + (["in", color] if color else [])
    else:
        words = words + ([color] if color else []) + [head]
    return " ".join(words if p.plural else ["a"] + words)


def _features(facts: _Facts, rng: np.random.Generator, k: int, alt: bool) -> str:
    """k different parts (never one part twice), joined as 'x, y and z'."""
    idx = rng.permutation(len(facts.parts))[: min(k, len(facts.parts))]
    items = [_part_phrase(facts.parts[i], rng, alt) for i in idx]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _pre_noun(facts: _Facts, rng: np.random.Generator, with_color: bool) -> list[str]:
    """Up to one size/material adjective, then (optionally) a colour, in English order."""
    words: list[str] = []
    if facts.adjectives and rng.random() < 0.6:
        words.append(_pick(rng, facts.adjectives[int(rng.integers(len(facts.adjectives)))]))
    if with_color and facts.color_words:
        words.append(_pick(rng, facts.color_words))
    return words


def _default_caption(facts: _Facts, rng: np.random.Generator) -> str:
    noun = _pick(rng, facts.nouns)
    form = int(rng.integers(4))
    if form == 0:  # "a red chair"
        return " ".join(["a"] + _pre_noun(facts, rng, True) + [noun])
    if form == 1:  # "a tall red chair with a slatted back"
        return " ".join(["a"] + _pre_noun(facts, rng, True) + [noun, "with", _features(facts, rng, 1, False)])
    if form == 2:  # "a chair with a blue seat and four black legs"
        return f"a {noun} with {_features(facts, rng, 2, False)}"
    return " ".join(["a"] + _pre_noun(facts, rng, rng.random() < 0.5) + [noun, "with", _features(facts, rng, 3, False)])


_ALT_FRAMES = ("a photo of {}", "a 3d render of {}", "this is {}", "a rendering of {}",
               "an image of {}", "a picture of {}")


def _alt_caption(facts: _Facts, rng: np.random.Generator) -> str:
    noun = _pick(rng, facts.nouns)
    form = int(rng.integers(4))
    adj = " ".join(["a"] + _pre_noun(facts, rng, False))
    color = _pick(rng, facts.color_words) if facts.color_words else None
    if form == 0 and color:  # "a photo of a tall stool in crimson"
        np_ = f"{adj} {noun} in {color}"
    elif form == 1 and color:  # "a 3d render of a crimson colored stool, featuring ..."
        np_ = f"{adj} {color} colored {noun}, featuring {_features(facts, rng, 1, True)}"
    elif form == 2:
        np_ = f"{adj} {noun} that has {_features(facts, rng, 2, True)}"
    else:
        tail = f" in {color}" if color and rng.random() < 0.5 else ""
        np_ = f"a {noun}{tail} featuring {_features(facts, rng, 3, True)}"
    return _pick(rng, _ALT_FRAMES).format(np_)


def fix_articles(text: str) -> str:
    """Choose 'a' or 'an' from the word that follows (written as 'a' everywhere above)."""
    words = text.split(" ")
    for i in range(len(words) - 1):
        if words[i] in ("a", "an"):
            nxt = words[i + 1]
            vowel = nxt[0] in "aeiou" and not nxt.startswith(("uti", "uni", "use"))
            words[i] = "an" if vowel or nxt == "suv" else "a"  # "an suv": said "ess-you-vee"
    return " ".join(words)


def make_captions(category: str, attributes: dict, rng: np.random.Generator, n: int = 6,
                  templates: str = "default") -> list[str]:
    """n captions true to `attributes`, from the "default" or "alt" template set."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    if templates not in TEMPLATE_SETS:
        raise ValueError(f"unknown caption template set {templates!r}; expected one of {TEMPLATE_SETS}")
    alt = templates == "alt"
    facts = _chair_facts(attributes, alt) if category == "chairs" else _car_facts(attributes, alt)
    write = _alt_caption if alt else _default_caption
    out: list[str] = []
    for _ in range(20 * n):  # prefer distinct captions; repeat only if the object is too plain
        cap = fix_articles(write(facts, rng))
        if cap not in out:
            out.append(cap)
        if len(out) == n:
            break
    while len(out) < n:
        out.append(fix_articles(write(facts, rng)))
    return out
