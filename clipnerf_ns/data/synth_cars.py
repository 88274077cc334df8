"""Procedural cars (sedans, hatchbacks, SUVs, pickups, vans, sports cars): attributes drawn at
random, the mesh built from them (conventions: `data.synth`)."""

from __future__ import annotations

import numpy as np

from clipnerf_ns.data.captions import make_captions
from clipnerf_ns.data.render import ColoredMesh
from clipnerf_ns.data.synth_parts import (
    GENERATOR_VERSION,
    GLASS_COLORS,
    NAMED_COLORS,
    RIM_COLORS,
    Part,
    ProceduralObject,
    box,
    hull,
    pick,
    shade,
    uniform,
    wheel,
)

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


# Share of each body style that has a rear wing (only these styles are asked about one), from
# generator version 2 on (version 1: half the sports cars).
_SPOILER_SHARE = {"sports": 0.5, "sedan": 0.3, "hatchback": 0.3}
SPOILER_STYLES = tuple(_SPOILER_SHARE)


def sample_car_attributes(rng: np.random.Generator, version: int = GENERATOR_VERSION) -> dict:
    """Draw a car's parameters (`synth_parts.GENERATOR_VERSION`)."""
    style = pick(rng, list(_CAR_STYLES))
    r = _CAR_STYLES[style]
    a: dict = {"category": "cars", "body_style": style}
    for key, name in (("length", "body_length"), ("width", "body_width"), ("body", "body_height"),
                      ("roof", "roof_height"), ("wheel", "wheel_radius")):
        a[name] = uniform(rng, *r[key])
    L = a["body_length"]
    a["wheel_width"] = uniform(rng, 0.045, 0.065)
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
    if version < 2:
        a["spoiler"] = bool(style == "sports" and rng.random() < 0.5)
    else:
        a["spoiler"] = bool(rng.random() < _SPOILER_SHARE.get(style, 0.0))
    a["open_bed"] = style == "pickup"
    a["body_color"] = pick(rng, list(NAMED_COLORS))
    # glass of the body's own colour would make the windows vanish
    a["window_color"] = pick(rng, [c for c in GLASS_COLORS if c != a["body_color"]])
    a["wheel_color"] = "black"
    a["rim_color"] = pick(rng, RIM_COLORS)
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
    return [(hull(pts), color)]


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
    glass = hull(section(g0, 0.003) + section(g1, 0.003))  # 3 mm proud: never coplanar
    return [(hull(section(z0) + section(z1)), body_color), (glass, glass_color)]


def _car_wheels(a: dict, tyre_color, rim_color) -> list[Part]:
    L, W, r, ww = a["body_length"], a["body_width"], a["wheel_radius"], a["wheel_width"]
    parts: list[Part] = []
    for x in (L / 2 - a["front_overhang"], -L / 2 + a["rear_overhang"]):
        for s in (-1, 1):
            # tyre's outer face 3 mm inside the rim's so the two never share a plane
            yc = s * (W / 2 - 0.003 - ww / 2)
            parts.append((wheel([x, yc, -0.5 + r], [0, 1, 0], r, ww), tyre_color))
            rim_c = [x, s * (W / 2 - 0.005), -0.5 + r]
            parts.append((wheel(rim_c, [0, 1, 0], 0.6 * r, 0.01, sections=16), rim_color))
    return parts


def _car_extras(a: dict, color, version: int) -> list[Part]:
    """Pickup bed walls and tailgate; rear wing. All body coloured and no higher than the roof."""
    L = a["body_length"]
    zt = -0.5 + a["body_height"]
    hw = _body_half_width(a) - 0.012  # the body's top edge is slightly narrower
    parts: list[Part] = []
    if a["open_bed"]:
        x_end, t, wh = -L / 2 + a["cabin_rear"], 0.015, 0.06
        for s in (-1, 1):
            y0, y1 = sorted((s * hw, s * (hw - t)))
            parts.append((box([-L / 2, y0, zt - 0.005], [x_end, y1, zt + wh]), color))
        parts.append((box([-L / 2, -hw, zt - 0.005], [-L / 2 + t, hw, zt + wh]), color))
    if a["spoiler"] and version < 2:  # a low wing 3.5 cm above the boot lid
        x0 = -L / 2 + 0.01
        for s in (-1, 1):
            parts.append((box([x0 + 0.02, s * 0.3 * hw - 0.008, zt - 0.01],
                               [x0 + 0.04, s * 0.3 * hw + 0.008, zt + 0.035]), color))
        parts.append((box([x0, -0.9 * hw, zt + 0.035], [x0 + 0.08, 0.9 * hw, zt + 0.047]), color))
    elif a["spoiler"]:
        # a rear wing on two struts, raised clear of the boot lid so that front views see it over
        # the deck (the first wing, 3.5 cm up, was a pixel at 64 px: every model was at chance)
        x0 = -L / 2 + 0.01
        top = min(zt + 0.09, -0.5 + a["roof_height"])
        for s in (-1, 1):
            parts.append((box([x0 + 0.025, s * 0.35 * hw - 0.01, zt - 0.01],
                               [x0 + 0.05, s * 0.35 * hw + 0.01, top - 0.015]), color))
        parts.append((box([x0 - 0.005, -0.95 * hw, top - 0.018], [x0 + 0.1, 0.95 * hw, top]), color))
    return parts


def _build_car(a: dict, rng: np.random.Generator, version: int) -> ColoredMesh:
    body = shade(a["body_color"], rng)
    glass = shade(a["window_color"], rng)
    tyre = shade(a["wheel_color"], rng)
    rim = shade(a["rim_color"], rng)
    parts = (_car_body(a, rng, body) + _car_cabin(a, body, glass)
             + _car_wheels(a, tyre, rim) + _car_extras(a, body, version))
    return ColoredMesh.from_parts(parts)


def generate_car(rng: np.random.Generator, version: int = GENERATOR_VERSION) -> ProceduralObject:
    """A random sedan, hatchback, SUV, pickup, van or sports car with attributes and captions."""
    a = sample_car_attributes(rng, version)
    mesh = _build_car(a, rng, version)
    return ProceduralObject(mesh, a, make_captions("cars", a, rng))
