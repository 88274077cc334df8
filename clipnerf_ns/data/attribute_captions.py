"""Captions that state one attribute, and their hard negatives (the same caption with that one
attribute changed), for teaching a CLIP the attributes its captions name.

A general caption ("a red chair with four thin legs and a slatted back") names a few random
facts, and the other captions of a batch differ from it in many ways at once, so a contrastive
model can match them by colour alone and never look at armrests or slats. Here each caption is
built around one question of `attributes.QUESTIONS` (its "focus"), plus up to two other true
facts; its hard negative says the same thing with another answer to the focus question, as
NegCLIP does. Wordings carry the synonyms users type ("backrest", "armrests", "backless",
"seat cushion", colour synonyms); the two template sets share the vocabulary and differ in
sentence frames, so the evaluator CLIP reads other sentences than the editing one.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from clipnerf_ns.data.attributes import QUESTIONS, Question
from clipnerf_ns.data.captions import fix_articles
from clipnerf_ns.data.synth_parts import COLOR_SYNONYMS

# Nouns of a chair by its kind; `synth_chairs.chair_kind` decides the kind from back, legs and arms.
_CHAIR_NOUNS = {
    "stool": ["stool", "backless stool", "backless seat"],
    "dining chair": ["chair", "dining chair", "side chair", "kitchen chair"],
    "armchair": ["armchair", "arm chair", "chair with arms"],
    "office chair": ["office chair", "swivel chair", "desk chair"],
}
_CAR_NOUNS = {
    "sedan": ["sedan", "saloon car"], "hatchback": ["hatchback", "hatchback car"],
    "suv": ["suv", "sport utility vehicle"], "pickup": ["pickup truck", "pickup"],
    "van": ["van", "minivan"], "sports": ["sports car", "race car"],
}

# Phrases (after "with") for each answer of each question; None: said by the noun instead.
_PHRASES: dict[str, dict[str, Optional[list[str]]]] = {
    "back_style": {"none": None, "solid": ["a solid back", "a plain back", "a solid backrest"],
                   "slatted": ["a slatted back", "a spindle back", "a slatted backrest", "a back made of slats"]},
    "back_height": {"high": ["a tall back", "a high back", "a tall backrest", "a high backrest"],
                    "low": ["a short back", "a low back", "a short backrest", "a low backrest"]},
    "back_tilt": {"reclined": ["a reclined back", "a leaning back", "a reclining backrest"],
                  "upright": ["an upright back", "a straight back", "an upright backrest"]},
    "armrests": {"yes": ["armrests", "arms", "arm rests"], "no": ["no armrests", "no arms"]},
    "leg_style": {"vertical": ["straight legs", "vertical legs"],
                  "splayed": ["splayed legs", "angled legs", "slanted legs"],
                  "pedestal": ["a star base", "a pedestal base", "a five-star base"]},
    "leg_count": {"3": ["three legs", "3 legs"], "4": ["four legs", "4 legs"]},
    "leg_thickness": {"high": ["thick legs", "chunky legs", "sturdy legs"],
                      "low": ["thin legs", "slender legs", "skinny legs"]},
    "stretchers": {"yes": ["stretchers between the legs", "rungs between the legs"],
                   "no": ["no stretchers between the legs", "no rungs between the legs"]},
    "seat_shape": {"round": ["a round seat", "a circular seat", "a round seat cushion"],
                   "rectangular": ["a square seat", "a rectangular seat", "a square seat cushion"]},
    "seat_width": {"high": ["a wide seat", "a broad seat", "a wide seat cushion"],
                   "low": ["a narrow seat", "a slim seat", "a narrow seat cushion"]},
    "seat_depth": {"high": ["a deep seat", "a deep seat cushion"], "low": ["a shallow seat", "a shallow seat cushion"]},
    "stool_height": {"high": None, "low": None},
    "spoiler": {"yes": ["a spoiler", "a rear spoiler", "a rear wing"], "no": ["no spoiler", "no rear wing"]},
    "wheel_size": {"high": ["big wheels", "large wheels", "oversized wheels"],
                   "low": ["small wheels", "tiny wheels"]},
    "roof_height": {"high": ["a tall roof", "a high roof"], "low": ["a low roof", "a flat low roof"]},
    "body_length": {"high": None, "low": None},
    "body_style": {s: None for s in _CAR_NOUNS},
}
_PART_OF_COLOR = {"seat_color": ["seat", "seat cushion"], "back_color": ["back", "backrest"],
                  "leg_color": ["legs"], "arm_color": ["armrests", "arms"]}
_PRE_NOUN = {  # adjectives before the noun for questions said that way
    "stool_height": {"high": ["tall", "high", "bar"], "low": ["short", "low"]},
    "body_length": {"high": ["long"], "low": ["short", "compact"]},
}

_DEFAULT_FRAMES = ("{np}", "{np}", "a picture of {np}")
_ALT_FRAMES = ("a photo of {np}", "a 3d render of {np}", "this is {np}", "an image of {np}", "a rendering of {np}")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _with(category: str, attributes: dict, q: Question, answer: str, rng) -> tuple[list[str], Optional[str]]:
    """(pre-noun words, phrase after 'with' or None) saying `answer` to `q`."""
    if not q.shape:  # a part's colour: "a red chair" when it is the whole object's, else "a red seat"
        word = _pick(rng, COLOR_SYNONYMS[answer])
        whole = q.name == "seat_color" and attributes.get("back_color") in (None, attributes["seat_color"])
        if whole and rng.random() < 0.5:  # the seat's colour is the whole chair's
            return [word], None
        if q.name in _PART_OF_COLOR:
            return [], f"a {word} {_pick(rng, _PART_OF_COLOR[q.name])}" if q.name in ("seat_color", "back_color") \
                else f"{word} {_pick(rng, _PART_OF_COLOR[q.name])}"
        return [word], None
    if q.name in _PRE_NOUN:
        return [_pick(rng, _PRE_NOUN[q.name][answer])], None
    phrases = _PHRASES[q.name][answer]
    return [], (_pick(rng, phrases) if phrases else None)


def _changed(category: str, attributes: dict, q: Question, answer: str) -> dict:
    """The attributes with the answer to `q` replaced, as far as the noun depends on it."""
    a = dict(attributes)
    if category == "chairs":
        if q.name == "back_style":
            a["back_style"] = answer
        elif q.name == "armrests":
            a["armrests"] = answer == "yes"
        elif q.name == "leg_style":
            a["leg_style"] = "straight" if answer == "vertical" else answer
    elif q.name == "body_style":
        a["body_style"] = answer
    return a


def _noun(category: str, a: dict, rng, generic: bool) -> str:
    """The object's noun; `generic`: the category's plain word where it is true ("chair", "car")."""
    if category == "cars":
        return _pick(rng, ["car", "vehicle"] if generic else _CAR_NOUNS[a["body_style"]])
    if generic and a["back_style"] != "none":
        return "chair"
    if a["back_style"] == "none":
        kind = "stool"
    elif a["leg_style"] == "pedestal":
        kind = "office chair"
    else:
        kind = "armchair" if a["armrests"] else "dining chair"
    return _pick(rng, _CHAIR_NOUNS[kind])


def _noun_questions(category: str) -> tuple[str, ...]:
    """Questions whose answer the noun carries: context facts never contradict it."""
    return ("back_style", "armrests", "leg_style") if category == "chairs" else ("body_style",)


def applicable(category: str, attributes: dict) -> list[Question]:
    """The questions with a clear answer for this object."""
    return [q for q in QUESTIONS[category] if q.answer(attributes) is not None]


def focused_pair(
    category: str, attributes: dict, focus: Question, rng: np.random.Generator, templates: str = "default",
) -> tuple[str, str]:
    """(caption stating the true answer to `focus`, the same caption with another answer)."""
    true = focus.answer(attributes)
    if true is None:
        raise ValueError(f"question {focus.name} does not apply to this object")
    other = _pick(rng, [x for x in focus.answers if x != true])
    caption = _caption_maker(category, attributes, focus, rng, templates, context=True)
    return caption(true), caption(other)


def answer_captions(
    category: str, attributes: dict, focus: Question, rng: np.random.Generator, templates: str = "default",
) -> list[str]:
    """One short caption per answer of `focus` (in `focus.answers` order), alike but for that
    answer and with no other facts: "a chair with a slatted back", "a chair with a solid back",
    "a stool". The choice among them is the zero-shot question the mappers and the benches ask."""
    if focus.answer(attributes) is None:
        raise ValueError(f"question {focus.name} does not apply to this object")
    caption = _caption_maker(category, attributes, focus, rng, templates, context=False)
    return [caption(answer) for answer in focus.answers]


def _caption_maker(category: str, attributes: dict, focus: Question, rng: np.random.Generator, templates: str,
                   context: bool):
    """caption(answer): the object's caption saying `answer` to `focus`, with (`context`) up to two
    other true facts; every caption it makes shares the frame, the noun's choice and those facts."""
    facts = []
    if context:
        skip = set(_noun_questions(category)) | {focus.name}
        if focus.name in _noun_questions(category):  # changing the noun changes what else may be said
            skip |= {"back_height", "back_tilt", "stool_height", "leg_count", "leg_thickness", "stretchers", "arm_color",
                     "back_color"}
        pool = [q for q in applicable(category, attributes) if q.name not in skip]
        facts = [pool[i] for i in rng.permutation(len(pool))[: int(rng.integers(0, 3))]]
    ctx_pre, ctx_with = [], []
    for q in facts:
        pre, phrase = _with(category, attributes, q, q.answer(attributes), rng)
        ctx_pre += pre
        ctx_with += [phrase] if phrase else []
    frames = _ALT_FRAMES if templates == "alt" else _DEFAULT_FRAMES
    if not context and templates == "alt":  # users type bare prompts: the evaluator must read them too
        frames = (*frames, "{np}", "{np}", "{np}")
    frame = _pick(rng, frames)
    order = rng.permutation(len(ctx_with) + 1)
    noun_seed = int(rng.integers(2**31))
    generic = focus.name not in _noun_questions(category) and rng.random() < 0.5
    phrase_seed = int(rng.integers(2**31))

    def caption(answer: str) -> str:
        a = _changed(category, attributes, focus, answer)
        pre, phrase = _with(category, a, focus, answer, np.random.default_rng(phrase_seed))
        noun = _noun(category, a, np.random.default_rng(noun_seed), generic)
        items = [phrase] + ctx_with if phrase else list(ctx_with)
        items = [items[i] for i in order if i < len(items)] if phrase else items
        words = " ".join(["a", *ctx_pre, *pre, noun])
        if items:
            tail = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
            words += (" that has " if templates == "alt" else " with ") + tail
        return fix_articles(frame.format(np=words))

    return caption
