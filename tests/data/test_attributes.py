"""Attribute questions and the captions built around them (focused captions, hard negatives)."""

import numpy as np
import pytest

from clipnerf_ns.data.attribute_captions import answer_captions, applicable, focused_pair
from clipnerf_ns.data.attributes import QUESTIONS, applies_judged, labels, question
from clipnerf_ns.data.captions import CATEGORY_NOUNS
from clipnerf_ns.data.synth import sample_attributes

STOOL = {"category": "chairs", "back_style": "none", "back_height": 0.0, "back_tilt": 0.0, "armrests": False,
         "leg_style": "round", "leg_count": 3, "leg_thickness": 0.03, "stretchers": False, "seat_shape": "round",
         "seat_width": 0.45, "seat_depth": 0.45, "seat_height": 0.6, "seat_color": "red", "back_color": None,
         "leg_color": "black", "arm_color": None, "kind": "stool"}


def test_answers_of_a_hand_made_stool():
    answers = {q.name: q.answer(STOOL) for q in QUESTIONS["chairs"]}
    assert answers["back_style"] == "none" and answers["back_height"] is None and answers["armrests"] is None
    assert answers["leg_style"] == "vertical" and answers["leg_count"] == "3" and answers["leg_thickness"] == "low"
    assert answers["stool_height"] == "high" and answers["seat_width"] is None  # 0.45: the middle third
    assert answers["seat_color"] == "red" and answers["back_color"] is None
    assert answers["seat_depth"] is None  # a round seat's depth is its width: the middle third too
    deep, shallow = ({**STOOL, "seat_shape": "rectangular", "seat_depth": d} for d in (0.5, 0.36))
    assert question("chairs", "seat_depth").answer(deep) == "high"
    assert question("chairs", "seat_depth").answer(shallow) == "low"
    row = labels("chairs", STOOL)
    assert row[0] == 0 and row[1] == -1 and len(row) == len(QUESTIONS["chairs"])
    with pytest.raises(KeyError, match="valid"):
        question("chairs", "wings")


def test_every_answer_occurs_in_sampled_objects():
    rng = np.random.default_rng(0)
    for category in ("chairs", "cars"):
        objects = [sample_attributes(category, rng) for _ in range(1500)]
        for q in QUESTIONS[category]:
            seen = {q.answer(a) for a in objects} - {None}
            assert seen == set(q.answers), (category, q.name, seen)


@pytest.mark.parametrize("category", ["chairs", "cars"])
def test_judged_applicability_matches_the_true_answers(category):
    """`applies_judged` read from the true answers says where each question applies, as the
    questions themselves do: where it says no, the true answer is None; where it says yes, only
    the questions with a middle class left unnamed (outer thirds, a back between upright and
    reclined) may still have none."""
    may_be_unnamed = {"back_height", "back_tilt", "leg_thickness", "seat_width", "seat_depth", "stool_height",
                      "leg_count", "wheel_size", "body_length", "roof_height"}
    rng = np.random.default_rng(1)
    for _ in range(600):
        attributes = sample_attributes(category, rng)
        truth = {q.name: q.answer(attributes) for q in QUESTIONS[category]}
        for q in QUESTIONS[category]:
            if not applies_judged(q.name, truth):
                assert truth[q.name] is None, (q.name, attributes)
            elif q.name not in may_be_unnamed:
                assert truth[q.name] is not None, (q.name, attributes)
    assert not applies_judged("back_height", {"back_style": "none"})
    assert not applies_judged("leg_count", {"leg_style": "pedestal"})
    assert applies_judged("seat_width", {})  # applies to every chair


@pytest.mark.parametrize("category", ["chairs", "cars"])
@pytest.mark.parametrize("templates", ["default", "alt"])
def test_focused_pairs_differ_in_the_focus_only(category, templates):
    rng = np.random.default_rng(1)
    nouns = CATEGORY_NOUNS[category] + ("seat", "vehicle")
    for _ in range(40):
        a = sample_attributes(category, rng)
        for q in applicable(category, a):
            positive, negative = focused_pair(category, a, q, rng, templates)
            assert positive != negative, (q.name, positive)
            assert any(n in positive for n in nouns) and any(n in negative for n in nouns)
            if templates == "alt":
                assert positive.split(" ")[0] in ("a", "this", "an")


@pytest.mark.parametrize("category", ["chairs", "cars"])
def test_answer_captions_name_each_answer_and_nothing_else(category):
    rng = np.random.default_rng(4)
    for _ in range(30):
        a = sample_attributes(category, rng)
        for q in applicable(category, a):
            captions = answer_captions(category, a, q, rng)
            assert len(captions) == len(q.answers) == len(set(captions)), (q.name, captions)
            assert all("," not in c and " and " not in c for c in captions), captions  # no other facts
    armchair = {**STOOL, "back_style": "slatted", "armrests": True, "back_height": 0.4, "back_tilt": 2.0, "kind": "armchair"}
    none, solid, slatted = answer_captions("chairs", armchair, question("chairs", "back_style"), np.random.default_rng(0))
    assert any(w in none for w in ("stool", "backless")) and "back" in solid and "slat" in slatted or "spindle" in slatted
    with pytest.raises(ValueError, match="does not apply"):
        answer_captions("chairs", STOOL, question("chairs", "armrests"), rng)


def test_the_words_users_type_are_in_the_vocabulary():
    rng = np.random.default_rng(2)
    seen = set()
    for _ in range(400):
        a = sample_attributes("chairs", rng)
        for q in applicable("chairs", a):
            seen.update(" ".join(focused_pair("chairs", a, q, rng)).split(" "))
    for word in ("backrest", "armrests", "backless", "legs", "cushion", "scarlet", "grey"):
        assert word in seen, word


def test_a_stool_focused_on_its_back_is_contrasted_with_a_chair():
    positive, negative = focused_pair("chairs", STOOL, question("chairs", "back_style"), np.random.default_rng(3))
    assert "stool" in positive or "backless" in positive
    assert "stool" not in negative and "chair" in negative and "back" in negative


def test_an_edit_is_not_charged_for_changing_what_the_asked_question_needs_in_order_to_apply():
    from clipnerf_ns.app.edit_evaluation import other_questions

    questions = ["back_style", "back_height", "armrests", "leg_style", "leg_count"]
    stool = {"back_style": "none", "back_height": "short", "armrests": "no", "leg_style": "vertical", "leg_count": "4"}
    armchair = {**stool, "back_style": "solid", "armrests": "yes", "leg_count": "3"}
    # arms need a back: the stool's back style changing is not a side effect; its leg count is
    assert other_questions(questions, "armrests", stool, armchair) == ["leg_style", "leg_count"]
    dining = {**stool, "back_style": "solid"}
    # a chair that had a back already is charged for changing its style (and its back height now applies)
    assert other_questions(questions, "armrests", dining, {**armchair, "back_style": "slatted"}) == \
        ["back_style", "back_height", "leg_style", "leg_count"]
