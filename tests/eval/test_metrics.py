import math

import pytest
import torch

from clipnerf_ns.app.edit_evaluation import part_measures
from clipnerf_ns.app.prompt_meanings import (
    category_implications,
    distinct_distractors,
    holds,
    named_color_of,
    named_part_color_of,
    prompt_meanings,
    true_answers,
)
from clipnerf_ns.data.synth_parts import NAMED_COLORS
from clipnerf_ns.editing.prompts import load_prompt_library
from clipnerf_ns.eval.metrics import (
    delta_e,
    expected_n_way_accuracy,
    haze,
    n_way_accuracy,
    object_mean_color,
    silhouette_iou,
    srgb_to_lab,
)


def test_lab_of_reference_colours():
    lab = srgb_to_lab(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    expected = torch.tensor([[100.0, 0.0, 0.0], [0.0, 0.0, 0.0], [53.24, 80.09, 67.20], [32.30, 79.19, -107.86]])
    assert torch.allclose(lab, expected, atol=0.05)
    assert float(delta_e(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.0, 0.0, 0.0]))) == pytest.approx(100.0, abs=0.01)


def test_object_colour_and_silhouettes():
    rgb = torch.ones(4, 4, 3)
    rgb[1:3, 1:3] = torch.tensor([0.2, 0.4, 0.6])
    alpha = torch.zeros(4, 4, 1)
    alpha[1:3, 1:3] = 1.0
    assert torch.allclose(object_mean_color(rgb, alpha), torch.tensor([0.2, 0.4, 0.6]))
    assert math.isnan(float(object_mean_color(rgb, torch.zeros(4, 4, 1))[0]))
    shifted = torch.zeros(4, 4, 1)
    shifted[1:3, 2:4] = 1.0
    assert silhouette_iou(alpha, alpha) == 1.0
    assert silhouette_iou(alpha, shifted) == pytest.approx(2 / 6)
    assert silhouette_iou(torch.zeros(4, 4, 1), torch.zeros(4, 4, 1)) == 1.0


def test_haze_counts_semi_transparent_object_pixels():
    opacity = torch.tensor([0.0, 0.05, 0.1, 0.5, 0.89, 0.9, 1.0, 1.0]).reshape(2, 4, 1)
    # object pixels: opacity above 0.1 (0.5, 0.89, 0.9, 1.0, 1.0); semi-transparent: below 0.9 (0.5, 0.89)
    assert haze(opacity) == pytest.approx(2 / 5)
    assert haze(torch.ones(3, 3, 1)) == 0.0
    assert math.isnan(haze(torch.zeros(3, 3, 1)))


def test_n_way_accuracy_by_hand():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[[1.0, 0.1], [0.0, 1.0]], [[1.0, 0.0], [0.1, 1.0]]])
    assert n_way_accuracy(image, candidates, torch.tensor([0, 1])) == 1.0
    assert n_way_accuracy(image, candidates, torch.tensor([0, 0])) == 0.5


def test_colour_prompts_are_recognised():
    assert named_color_of("a crimson chair", "chair") == "red"
    assert named_color_of("An ivory chair", "chair") == "white"
    assert named_color_of("a chair with a red seat", "chair") is None
    assert named_color_of("a wooden chair", "chair") is None


def test_part_colour_prompts_name_a_part_and_a_colour():
    assert named_part_color_of("a chair with a crimson seat", "chair") == ("seat", "red")
    assert named_part_color_of("a chair with black legs", "chair") == ("base", "black")
    assert named_part_color_of("A chair with an ivory seat cushion", "chair") == ("seat", "white")
    assert named_part_color_of("a chair with a red backrest", "chair") == ("back", "red")
    assert named_part_color_of("a red chair", "chair") is None
    assert named_part_color_of("a chair with a tall back", "chair") is None


def test_a_part_edit_is_measured_on_the_part_and_the_rest_apart():
    """A grey 4 x 4 object whose top half (the part) turns red: the part reaches red, the rest is unchanged."""
    part = torch.zeros(4, 4, dtype=torch.bool)
    part[:2] = True
    before = {"rgb": torch.full((4, 4, 3), 0.5), "accumulation": torch.ones(4, 4, 1)}
    after = {"rgb": before["rgb"].clone(), "accumulation": torch.ones(4, 4, 1)}
    after["rgb"][:2] = torch.tensor(NAMED_COLORS["red"])
    measures = part_measures(before, after, part, "red")
    assert measures["delta_e_after"] < 1.0 < 30.0 < measures["delta_e_before"]
    assert measures["rest_color_change"] == 0.0 and measures["iou"] == 1.0 and measures["part_pixels"] == 8
    hidden = part_measures(before, after, torch.zeros(4, 4, dtype=torch.bool), "red")
    assert hidden["delta_e_before"] is None and hidden["part_pixels"] == 0


def test_expected_n_way_accuracy_is_the_mean_over_every_draw():
    """The exact mean over draws equals brute force over every subset of distractors."""
    import itertools

    generator = torch.Generator().manual_seed(0)
    image, texts = torch.randn(8, generator=generator), torch.randn(7, 8, generator=generator)
    one = torch.zeros(1, dtype=torch.long)
    draws = [n_way_accuracy(image[None], texts[[0, *d]][None], one) for d in itertools.combinations(range(1, 7), 4)]
    assert expected_n_way_accuracy(image, texts, 5) == pytest.approx(sum(draws) / len(draws)) and 0 < sum(draws) < len(draws)
    assert expected_n_way_accuracy(texts[0], texts, 5) == 1.0  # the prompt's own embedding: always chosen
    assert expected_n_way_accuracy(image, texts[:3], 5) == n_way_accuracy(image[None], texts[:3][None], one)  # fewer: all


def test_five_way_distractors_are_neither_implied_by_the_prompt_nor_already_true():
    """The shipped chairs library: what the judge reads for its prompts, and the distractors a
    five-way choice may offer for edits of a green chair with brown legs."""
    library = load_prompt_library(None, "chairs")
    meanings = prompt_meanings(library, "chairs")
    assert meanings["a chair with a tall back"] == meanings["a chair with a high back"] == {("back_height", frozenset({"high"}))}
    assert meanings["a chair with a solid back"] == {("back_style", frozenset({"solid"}))}  # the test's `where`: not a stool
    assert meanings["a chair with a star base"] == {("leg_style", frozenset({"pedestal"})), ("leg_count", frozenset({"4"}))}
    assert meanings["a crimson chair"] == meanings["a red chair"] and len(meanings["a red chair"]) == 4
    assert meanings["a wooden chair"] == meanings["a brown chair"]  # as the captions use the word
    chair = {"back_style": "solid", "back_height": "high", "back_tilt": "upright", "armrests": "no", "leg_style": "vertical",
             "leg_count": "4", "leg_thickness": "low", "stretchers": "no", "seat_shape": "rectangular", "seat_width": "low",
             "stool_height": "low", "seat_color": "green", "back_color": "green", "leg_color": "brown", "arm_color": "green"}
    assert holds(meanings["a chair with four legs"], chair) and not holds(meanings["a tall stool"], chair)  # no stool height
    assert not holds(meanings["a green chair"], chair) and holds(meanings["a chair with brown legs"], chair)
    assert not holds(meanings["a chair with four legs"], {**chair, "leg_style": "pedestal"})  # no leg count, and a pedestal
    armchair = distinct_distractors("an armchair", library.shape, meanings, chair)
    assert "a chair with armrests" not in armchair  # its synonym
    assert not {"a chair with a tall back", "a chair with four legs", "a chair with thin legs"} & set(armchair)  # true already
    assert {"a chair with a short back", "a stool", "a chair with three legs", "a chair with a star base"} <= set(armchair)
    assert "a stool" not in distinct_distractors("a tall stool", library.shape, meanings, chair)  # a tall stool is a stool
    assert "a chair with four legs" in distinct_distractors("a chair with a star base", library.shape, meanings, {})
    claims = prompt_meanings(library, "chairs", conditions=False)  # where a test applies is no claim of its prompt
    assert claims["a chair with a star base"] == {("leg_style", frozenset({"pedestal"}))} and claims["a tall stool"] == {
        ("stool_height", frozenset({"high"}))}
    office = distinct_distractors("an office chair", library.shape, meanings, chair, claims)
    assert "a chair with a star base" not in office and "a swivel chair" not in office  # its synonyms for the judge
    assert "a chair with a star base" in distinct_distractors("an office chair", library.shape, meanings, chair)
    assert "a tall stool" in distinct_distractors("a stool", library.shape, meanings, chair, claims)  # not every stool is tall
    assert "a stool" not in distinct_distractors("a tall stool", library.shape, meanings, chair, claims)
    red_seat = distinct_distractors("a chair with a red seat", library.appearance, meanings, chair)
    assert "a chair with brown legs" not in red_seat and {"a red chair", "a crimson chair", "a chair with a red back"} <= set(red_seat)
    red = distinct_distractors("a red chair", library.appearance, meanings, {})  # no judge: what the prompt implies
    assert red == [p for p in library.appearance if p not in ("a red chair", "a crimson chair", "a chair with a red seat",
                                                               "a chair with a red back")]


def test_the_category_implies_what_all_its_objects_that_show_a_prompt_show():
    """Procedural chairs: every three-legged one has a round seat (so a five-way choice for "three
    legs" offers no round seat), while no such law ties four legs, or a round seat, to anything; an
    object lacking attributes is passed over, and a law needs enough objects to rest on."""
    import numpy as np

    from clipnerf_ns.data.synth_chairs import sample_chair_attributes

    rng = np.random.default_rng(0)
    attributes = [sample_chair_attributes(rng) for _ in range(400)] + [{"back_style": "solid"}]
    library = load_prompt_library(None, "chairs")
    meanings, claims = (prompt_meanings(library, "chairs", conditions=c) for c in (True, False))
    truths = [t[0] for t in (true_answers("chairs", a) for a in attributes) if t is not None]
    assert len(truths) == 400  # the object without every attribute says nothing
    implied = category_implications(library.shape, meanings, claims, truths)
    assert ("a chair with three legs", "a chair with a round seat") in implied
    assert ("an office chair", "a chair with a star base") in implied  # as its words say
    assert not {pair for pair in implied if pair[0] in ("a chair with four legs", "a chair with a round seat")}
    chair = {"back_style": "solid", "leg_style": "vertical", "leg_count": "4", "seat_shape": "rectangular"}
    offered = distinct_distractors("a chair with three legs", library.shape, meanings, chair, claims, implied)
    assert "a chair with a round seat" not in offered and "a chair with a round seat" in distinct_distractors(
        "a chair with three legs", library.shape, meanings, chair, claims)
    assert not category_implications(library.shape, meanings, claims, truths[:10])  # too few to say


def test_true_answers_leave_a_middling_attribute_undecided_and_no_distractor():
    """From true attributes: a seat of middling width has no seat-width answer and asks no wide or
    narrow seat of a five-way choice; a chair's missing stool height is no such doubt (a chair is
    no tall stool); a stool's middling height is; attributes that lack a key say nothing."""
    import numpy as np

    from clipnerf_ns.data.synth_chairs import sample_chair_attributes

    rng = np.random.default_rng(1)
    chairs = [sample_chair_attributes(rng) for _ in range(300)]
    middling = next(a for a in chairs if a["back_style"] == "solid" and true_answers("chairs", a)[0].get("seat_width") is None)
    known, undecided = true_answers("chairs", middling)
    assert "seat_width" in undecided and "seat_width" not in known and "stool_height" not in undecided
    assert known["back_style"] == "solid"
    stools = [true_answers("chairs", a) for a in chairs if a["back_style"] == "none"]
    assert any("stool_height" in u for _, u in stools) and not any("back_height" in u for _, u in stools)
    assert true_answers("chairs", {"back_style": "solid"}) is None and true_answers("chairs", None) is None
    library = load_prompt_library(None, "chairs")
    meanings, claims = (prompt_meanings(library, "chairs", conditions=c) for c in (True, False))
    offered = distinct_distractors("a chair with four legs", library.shape, meanings, known, claims, undecided=undecided)
    assert not {"a chair with a wide seat", "a chair with a narrow seat"} & set(offered)
    assert "a tall stool" in offered and "a chair with a wide seat" in distinct_distractors(
        "a chair with four legs", library.shape, meanings, known, claims)
