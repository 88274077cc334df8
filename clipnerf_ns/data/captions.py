"""Captions of procedural objects: what may truthfully be said of an object's attributes, in two
disjoint template sets ("default" and "alt"), with size words for the outer thirds of each size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipnerf_ns.data.synth_parts import CATEGORIES, COLOR_SYNONYMS, TEMPLATE_SETS, pick

# Every caption contains one of these (or a colour synonym); the test relies on it.
CATEGORY_NOUNS: dict[str, tuple[str, ...]] = {
    "chairs": ("chair", "stool", "armchair", "arm chair"),
    "cars": (
        "car", "sedan", "saloon", "hatchback", "hatch", "suv", "crossover", "4x4", "vehicle",
        "pickup", "pick-up", "truck", "van", "minivan", "minibus", "people carrier", "coupe",
        "supercar",
    ),
}


# ----------------------------------------------------------------------------- captions

# Size words apply to the outer thirds of each attribute's distribution. These are the
# empirical terciles of the samplers above (measured on 4000 draws); a test checks that
# each word still covers roughly a third of the objects.
_TERCILES: dict[str, tuple[float, float]] = {
    "back_height": (0.306, 0.39),  # chairs with a back
    "chair_seat_height": (0.387, 0.454),  # chairs with a back
    "stool_seat_height": (0.449, 0.565),  # stools only: a tall stool is taller than a tall chair seat
    "seat_width": (0.401, 0.478),
    "seat_depth": (0.397, 0.463),
    "leg_thickness": (0.037, 0.048),
    "body_length": (0.822, 0.88),
    "roof_height": (0.402, 0.527),
    "wheel_radius": (0.074, 0.085),
}


# A back reclined by at least this many degrees is "reclined", by at most UPRIGHT_DEG "upright";
# in between captions say nothing. The gap is wide because from the front (where product photos
# are taken) a recline is seen foreshortened: 12 against 4 degrees was near chance for every model.
RECLINED_DEG = 16.0
UPRIGHT_DEG = 5.0


def size_class(key: str, value: float | None) -> str:
    """'low', 'mid' or 'high' third of an attribute's distribution (see _TERCILES); 'unknown' for
    None (a real chair's size that its geometry does not give)."""
    if value is None:
        return "unknown"
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
    return [high] if size == "high" else ([low] if size == "low" else [])


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
    tilt = a["back_tilt"]
    if tilt is None:
        pass  # a real chair's back whose recline could not be measured
    elif tilt >= RECLINED_DEG:
        slots.append(["tilted", "leaning"] if alt else ["reclined", "leaning"])
    elif tilt <= UPRIGHT_DEG:
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
    if a["leg_style"] is None:  # a real chair's base that is no set of legs (a sled, a panel)
        return [_PartWords(["base"], [], colors)]
    count = a["leg_count"]
    slots = [[str(count)] if alt else [_NUMBER_WORDS[count]]] if count in _NUMBER_WORDS else []
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
    if roof in ("low", "high"):
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
        return pick(rng, p.phrases)
    # a phrase must say something: with no colour to name, at least one adjective is used
    least = 1 if p.slots and not p.colors else 0
    keep = sorted(rng.permutation(len(p.slots))[: int(rng.integers(least, min(2, len(p.slots)) + 1))])
    words = [pick(rng, p.slots[i]) for i in keep]
    color = pick(rng, p.colors) if p.colors and (not words or rng.random() < 0.5) else None
    head = pick(rng, p.heads)
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
        words.append(pick(rng, facts.adjectives[int(rng.integers(len(facts.adjectives)))]))
    if with_color and facts.color_words:
        words.append(pick(rng, facts.color_words))
    return words


def _default_caption(facts: _Facts, rng: np.random.Generator) -> str:
    noun = pick(rng, facts.nouns)
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
    noun = pick(rng, facts.nouns)
    form = int(rng.integers(4))
    adj = " ".join(["a"] + _pre_noun(facts, rng, False))
    color = pick(rng, facts.color_words) if facts.color_words else None
    if form == 0 and color:  # "a photo of a tall stool in crimson"
        np_ = f"{adj} {noun} in {color}"
    elif form == 1 and color:  # "a 3d render of a crimson colored stool, featuring ..."
        np_ = f"{adj} {color} colored {noun}, featuring {_features(facts, rng, 1, True)}"
    elif form == 2:
        np_ = f"{adj} {noun} that has {_features(facts, rng, 2, True)}"
    else:
        tail = f" in {color}" if color and rng.random() < 0.5 else ""
        np_ = f"a {noun}{tail} featuring {_features(facts, rng, 3, True)}"
    return pick(rng, _ALT_FRAMES).format(np_)


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
