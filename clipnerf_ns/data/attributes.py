"""Visual questions about procedural objects, answered from their true attributes.

A question ("back_height", "armrests", "seat_color"...) has a few answers; `answer(attributes)`
gives the true one, or None when the question does not apply (the back height of a stool) or
has no clear answer (a back in the middle third of back heights: captions say nothing of it
either). The attribute judge is trained and scored on these answers, and the CLIP benches use
them as ground truth for "a chair with a tall back" against "a chair with a short back".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from clipnerf_ns.data.captions import RECLINED_DEG, UPRIGHT_DEG, size_class
from clipnerf_ns.data.synth_cars import SPOILER_STYLES
from clipnerf_ns.data.synth_parts import NAMED_COLORS

COLOR_NAMES: tuple[str, ...] = tuple(NAMED_COLORS)
BODY_STYLES: tuple[str, ...] = ("sedan", "hatchback", "suv", "pickup", "van", "sports")


@dataclass(frozen=True)
class Question:
    """One thing a render shows or not, with its possible answers."""

    name: str
    category: str
    answers: tuple[str, ...]
    answer: Callable[[dict], Optional[str]]
    """The true answer for an object's attributes, or None where the question does not apply."""
    shape: bool = True
    """A shape question (False: a colour question)."""

    def label(self, attributes: dict) -> int:
        """Index of the true answer, or -1 where the question does not apply."""
        value = self.answer(attributes)
        return -1 if value is None else self.answers.index(value)


def _outer_third(key: str, value: float) -> Optional[str]:
    """'low' or 'high' for the outer thirds of an attribute's distribution, None for the middle."""
    size = size_class(key, value)
    return size if size in ("low", "high") else None


def _has_back(a: dict) -> bool:
    return a["back_style"] != "none"


def _legs(a: dict) -> bool:
    """A set of legs (not a star base, nor a real chair's sled or panel base)."""
    return a["leg_style"] in ("straight", "round", "splayed")


def _tilt(a: dict) -> Optional[str]:
    if not _has_back(a) or a["back_tilt"] is None:
        return None
    return "reclined" if a["back_tilt"] >= RECLINED_DEG else ("upright" if a["back_tilt"] <= UPRIGHT_DEG else None)


def _color(key: str) -> Callable[[dict], Optional[str]]:
    return lambda a: a.get(key) or None


_CHAIRS = (
    Question("back_style", "chairs", ("none", "solid", "slatted"), lambda a: a["back_style"]),
    Question("back_height", "chairs", ("low", "high"),
             lambda a: _outer_third("back_height", a["back_height"]) if _has_back(a) else None),
    Question("back_tilt", "chairs", ("upright", "reclined"), _tilt),
    Question("armrests", "chairs", ("no", "yes"),
             lambda a: ("yes" if a["armrests"] else "no") if _has_back(a) else None),
    # round and square legs are one or two pixels wide at 64 px: both count as vertical legs
    Question("leg_style", "chairs", ("vertical", "splayed", "pedestal"),
             lambda a: "vertical" if a["leg_style"] in ("straight", "round") else a["leg_style"]),
    Question("leg_count", "chairs", ("3", "4"),
             lambda a: str(a["leg_count"]) if _legs(a) and a["leg_count"] in (3, 4) else None),
    Question("leg_thickness", "chairs", ("low", "high"),
             lambda a: _outer_third("leg_thickness", a["leg_thickness"]) if _legs(a) else None),
    Question("stretchers", "chairs", ("no", "yes"),
             lambda a: ("yes" if a["stretchers"] else "no") if a["leg_style"] in ("straight", "round") else None),
    Question("seat_shape", "chairs", ("rectangular", "round"), lambda a: a["seat_shape"]),
    Question("seat_width", "chairs", ("low", "high"), lambda a: _outer_third("seat_width", a["seat_width"])),
    Question("seat_depth", "chairs", ("low", "high"), lambda a: _outer_third("seat_depth", a["seat_depth"])),
    Question("stool_height", "chairs", ("low", "high"),
             lambda a: None if _has_back(a) else _outer_third("stool_seat_height", a["seat_height"])),
    Question("seat_color", "chairs", COLOR_NAMES, _color("seat_color"), shape=False),
    Question("back_color", "chairs", COLOR_NAMES, _color("back_color"), shape=False),
    Question("leg_color", "chairs", COLOR_NAMES, _color("leg_color"), shape=False),
    Question("arm_color", "chairs", COLOR_NAMES, _color("arm_color"), shape=False),
)

_CARS = (
    Question("body_style", "cars", BODY_STYLES, lambda a: a["body_style"]),
    Question("spoiler", "cars", ("no", "yes"),
             lambda a: ("yes" if a["spoiler"] else "no") if a["body_style"] in SPOILER_STYLES else None),
    Question("wheel_size", "cars", ("low", "high"), lambda a: _outer_third("wheel_radius", a["wheel_radius"])),
    Question("body_length", "cars", ("low", "high"), lambda a: _outer_third("body_length", a["body_length"])),
    Question("roof_height", "cars", ("low", "high"), lambda a: _outer_third("roof_height", a["roof_height"])),
    Question("body_color", "cars", COLOR_NAMES, _color("body_color"), shape=False),
)

QUESTIONS: dict[str, tuple[Question, ...]] = {"chairs": _CHAIRS, "cars": _CARS}
"""The questions of each procedural category, in a fixed order (the judge's heads)."""


def question(category: str, name: str) -> Question:
    """The question `name` of `category`; KeyError names the valid ones."""
    for q in QUESTIONS[category]:
        if q.name == name:
            return q
    raise KeyError(f"no question {name!r} for {category}; valid: {', '.join(q.name for q in QUESTIONS[category])}")


# Where a judged question applies, from the judge's answers to the others (it answers every question
# of every render): the counterpart of `Question.answer` giving None, for renders without attributes.
_APPLIES_IF: dict[str, Callable[[dict], bool]] = {
    "back_height": lambda j: j["back_style"] != "none",
    "back_tilt": lambda j: j["back_style"] != "none",
    "armrests": lambda j: j["back_style"] != "none",
    "back_color": lambda j: j["back_style"] != "none",
    "arm_color": lambda j: j["back_style"] != "none" and j["armrests"] == "yes",
    "leg_count": lambda j: j["leg_style"] != "pedestal",
    "leg_thickness": lambda j: j["leg_style"] != "pedestal",
    "stretchers": lambda j: j["leg_style"] == "vertical",
    "stool_height": lambda j: j["back_style"] == "none",
    "spoiler": lambda j: j["body_style"] in SPOILER_STYLES,
}


def applies_judged(name: str, judged: dict[str, str]) -> bool:
    """Whether question `name` applies to a render whose questions were answered `judged`
    (question -> answer): a stool has no back height, a star base no leg count."""
    rule = _APPLIES_IF.get(name)
    return rule is None or rule(judged)


def labels(category: str, attributes: dict) -> list[int]:
    """The answer index of every question of the category (-1 where it does not apply)."""
    return [q.label(attributes) for q in QUESTIONS[category]]
