"""Procedural chairs (stools, dining chairs, armchairs, office chairs): attributes drawn at random,
the mesh built from them (conventions: `data.synth`)."""

from __future__ import annotations

import numpy as np
import trimesh

from clipnerf_ns.data.captions import make_captions
from clipnerf_ns.data.render import ColoredMesh
from clipnerf_ns.data.synth_parts import (
    FURNITURE_LEG_COLORS,
    GENERATOR_VERSION,
    NAMED_COLORS,
    Part,
    ProceduralObject,
    box,
    hull,
    pick,
    shade,
    shear_x,
    slanted_rod,
    uniform,
    vertical_cylinder,
    wheel,
)

# ----------------------------------------------------------------------------- chairs


def sample_chair_attributes(rng: np.random.Generator, version: int = GENERATOR_VERSION) -> dict:
    """Draw a chair's parameters (`synth_parts.GENERATOR_VERSION`); correlations (office chairs,
    stools) keep them plausible."""
    leg_style = pick(rng, ["straight", "round", "splayed", "pedestal"], p=[0.3, 0.25, 0.25, 0.2])
    back_style = pick(rng, ["solid", "slatted", "none"], p=[0.4, 0.35, 0.25])
    if leg_style == "pedestal" and back_style == "slatted":
        back_style = "solid"  # slatted office chairs look wrong
    stool = back_style == "none"
    seat_shape = pick(rng, ["round", "rectangular"], p=[0.6, 0.4] if stool else [0.2, 0.8])
    a: dict = {"category": "chairs", "seat_shape": seat_shape}
    a["seat_width"] = uniform(rng, 0.3, 0.5) if seat_shape == "round" else uniform(rng, 0.34, 0.58)
    a["seat_depth"] = a["seat_width"] if seat_shape == "round" else uniform(rng, 0.34, 0.54)
    a["seat_height"] = uniform(rng, 0.35, 0.68) if stool else uniform(rng, 0.32, 0.52)
    a["seat_thickness"] = uniform(rng, 0.05, 0.09) if leg_style == "pedestal" else uniform(rng, 0.025, 0.07)
    a.update(_sample_back(rng, back_style, a, version))
    a.update(_sample_legs(rng, leg_style, seat_shape))
    a["armrests"] = bool(not stool and rng.random() < (0.6 if leg_style == "pedestal" else 0.35))
    # Armrests stay clearly below the top of the back so the back is the highest part.
    a["arm_height"] = min(uniform(rng, 0.15, 0.24), round(a["back_height"] - 0.05, 3)) if a["armrests"] else 0.0
    a.update(sample_chair_colors(rng, stool, a["armrests"]))
    a["kind"] = chair_kind(a)
    return a


def _sample_back(rng: np.random.Generator, style: str, a: dict, version: int) -> dict:
    if style == "none":
        return {"back_style": "none", "back_height": 0.0, "back_tilt": 0.0, "back_thickness": 0.0,
                "back_width": 0.0, "back_top_scale": 1.0, "slat_count": 0, "slat_orientation": "none"}
    frac = (0.6, 0.8) if a["seat_shape"] == "round" else (0.8, 1.0)
    return {
        "back_style": style,
        # total height stays <= 0.98 so the chair fits the unit box
        "back_height": min(uniform(rng, 0.22, 0.48), round(0.98 - a["seat_height"], 3)),
        "back_tilt": uniform(rng, 0.0, 18.0 if version < 2 else 26.0),  # captions: upright <= 5, reclined >= 16
        "back_thickness": uniform(rng, 0.025, 0.05),
        "back_width": round(a["seat_width"] * float(rng.uniform(*frac)), 3),
        "back_top_scale": uniform(rng, 0.85, 1.15) if style == "solid" else 1.0,
        "slat_count": int(rng.integers(2, 6)) if style == "slatted" else 0,
        "slat_orientation": pick(rng, ["vertical", "horizontal"]) if style == "slatted" else "none",
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
        "leg_thickness": uniform(rng, 0.025, 0.06),
        "leg_splay": uniform(rng, 5.0, 12.0) if style == "splayed" else 0.0,
        "stretchers": bool(style in ("straight", "round") and rng.random() < 0.4),
        "base_radius": uniform(rng, 0.2, 0.27) if style == "pedestal" else 0.0,
    }


def sample_chair_colors(rng: np.random.Generator, stool: bool, armrests: bool) -> dict:
    """Typical schemes: one colour overall, or upholstery (seat/back) over wood/metal legs."""
    names = list(NAMED_COLORS)
    seat = pick(rng, names)
    if rng.random() < 0.25:
        back, leg = seat, seat
    else:
        back = seat if rng.random() < 0.75 else pick(rng, [n for n in names if n != seat])
        if rng.random() < 0.8:
            leg = pick(rng, [n for n in FURNITURE_LEG_COLORS if n != seat] or names)
        else:
            leg = pick(rng, [n for n in names if n != seat])
    return {
        "seat_color": seat,
        "back_color": None if stool else back,
        "leg_color": leg,
        "arm_color": pick(rng, [seat, leg]) if armrests else None,
    }


def chair_kind(a: dict) -> str:
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
        return [(vertical_cylinder(0, 0, z_bot, z_top, a["seat_width"] / 2, sections=24), color)]
    w, d = a["seat_width"], a["seat_depth"]
    return [(box([-d / 2, -w / 2, z_bot], [d / 2, w / 2, z_top]), color)]


def _chair_legs(a: dict, z_top: float, color) -> list[Part]:
    if a["leg_style"] == "pedestal":
        return _pedestal(a, z_top, color)
    z_attach = z_top - a["seat_thickness"] / 2  # legs reach into the seat: no visible gap
    t = a["leg_thickness"]
    anchors = _leg_anchors(a)
    parts: list[Part] = []
    for x, y in anchors:
        if a["leg_style"] == "straight":
            leg = box([x - t / 2, y - t / 2, -0.5], [x + t / 2, y + t / 2, z_attach])
        elif a["leg_style"] == "round":
            leg = vertical_cylinder(x, y, -0.5, z_attach, t / 2)
        else:  # splayed: the foot moves outwards, radially from the seat centre
            out = np.array([x, y]) / np.linalg.norm([x, y])
            foot = np.array([x, y]) + out * np.tan(np.radians(a["leg_splay"])) * (z_attach + 0.5)
            leg = slanted_rod([foot[0], foot[1], -0.5], [x, y, z_attach], t / 2)
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
    parts: list[Part] = [(vertical_cylinder(0, 0, z_hub - foot_h, z_top - a["seat_thickness"] / 2, col_r), color)]
    rad = a["base_radius"]
    for k in range(5):
        ang = 2 * np.pi * k / 5
        rot = trimesh.transformations.rotation_matrix(ang, [0, 0, 1])
        foot = box([0.0, -0.02, z_hub - foot_h], [rad, 0.02, z_hub])
        foot.apply_transform(rot)
        c, s = np.cos(ang), np.sin(ang)
        centre = [(rad - 0.015) * c, (rad - 0.015) * s, -0.5 + caster_r]
        parts += [(foot, color), (wheel(centre, [-s, c, 0.0], caster_r, 0.02, sections=12), color)]
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
        meshes = [hull(pts)]
    else:
        meshes = _slatted_back(a, x_r, z0, z_top, top)
    return [(shear_x(m, z_top, a["back_tilt"]), color) for m in meshes]


def _slatted_back(a: dict, x_r: float, z0: float, z_top: float, top: float) -> list[trimesh.Trimesh]:
    """Two posts and a top rail, with vertical slats or horizontal (ladder) rails between them."""
    bw, bt, n = a["back_width"], a["back_thickness"], a["slat_count"]
    pw, rail_h = 0.03, min(0.07, 0.25 * a["back_height"])
    x0, x1 = x_r, x_r + bt
    meshes = []
    for s in (-1, 1):
        y0, y1 = sorted((s * bw / 2, s * (bw / 2 - pw)))
        meshes.append(box([x0, y0, z0], [x1, y1, top]))
    meshes.append(box([x0, -bw / 2, top - rail_h], [x1, bw / 2, top]))
    inner = bw / 2 - pw
    xs0, xs1 = x0 + 0.2 * bt, x1 - 0.2 * bt  # slats are thinner than the frame
    if a["slat_orientation"] == "vertical":
        sw = min(0.04, 2 * inner / (2 * n + 1))
        for y in np.linspace(-inner, inner, n + 2)[1:-1]:
            meshes.append(box([xs0, y - sw / 2, z_top], [xs1, y + sw / 2, top - rail_h]))
    else:
        for z in np.linspace(z_top + 0.04, top - rail_h, n + 1)[:-1]:
            meshes.append(box([xs0, -inner, z], [xs1, inner, z + 0.03]))
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
        parts.append((box([x_back, y0, z_top + ah - at], [x_front, y1, z_top + ah]), color))
        parts.append((box([x_post - aw * 0.35, y0 + 0.008, z_top - a["seat_thickness"] / 2],
                           [x_post + aw * 0.35, y1 - 0.008, z_top + ah - at]), color))
    return parts


def chair_part_shades(a: dict, rng: np.random.Generator) -> dict[str, tuple[float, float, float]]:
    """The RGB of each part ("seat", "back", "base", "arms"): a shade of its named colour, one shade
    for the parts that share a name (as one piece of upholstery or wood would)."""
    seat = shade(a["seat_color"], rng)
    leg = seat if a["leg_color"] == a["seat_color"] else shade(a["leg_color"], rng)
    back = seat if a["back_color"] in (None, a["seat_color"]) else shade(a["back_color"], rng)
    arm = {a["seat_color"]: seat, a["leg_color"]: leg}.get(a["arm_color"], seat)
    return {"seat": seat, "back": back, "base": leg, "arms": arm}


def _build_chair(a: dict, rng: np.random.Generator) -> ColoredMesh:
    z_top = -0.5 + a["seat_height"]
    rgb = chair_part_shades(a, rng)
    groups = {"seat": _chair_seat(a, z_top, rgb["seat"]), "base": _chair_legs(a, z_top, rgb["base"]),
              "back": _chair_back(a, z_top, rgb["back"]), "arms": _chair_arms(a, z_top, rgb["arms"])}
    return ColoredMesh.from_parts([p for parts in groups.values() for p in parts],
                                  [name for name, parts in groups.items() for _ in parts])


def generate_chair(rng: np.random.Generator, version: int = GENERATOR_VERSION) -> ProceduralObject:
    """A random chair, stool, armchair or office chair with its attributes and captions."""
    a = sample_chair_attributes(rng, version)
    mesh = _build_chair(a, rng)
    return ProceduralObject(mesh, a, make_captions("chairs", a, rng))
