"""Mappers, the edit maths and the Editor on a tiny model with the real compact CLIP."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipnerf_ns.clip.encoder import ClipConfig, ClipEncoder
from clipnerf_ns.codes import Codes
from clipnerf_ns.editing.edit import Edit, Editor, apply_change, edited_targets, read_exemplar, render_views
from clipnerf_ns.editing.losses import clip_distance, code_change_penalty, directional_clip_distance
from clipnerf_ns.editing.mappers import CodeMapper, Mappers, prior_distance, pull_into_prior
from clipnerf_ns.editing.prompts import load_prompt_library
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.rendering import semi_transparency
from tests.helpers import TINY, make_model


@pytest.fixture(scope="module")
def clip():
    return ClipEncoder.load(ClipConfig())


def test_untrained_mapper_is_the_identity_edit():
    mapper = CodeMapper(clip_dim=16, code_dim=8)
    assert torch.equal(mapper(torch.randn(5, 16)), torch.zeros(5, 8))
    codes = Codes(torch.randn(8), torch.randn(8))
    for target in ("shape", "appearance"):
        edited = apply_change(codes, target, mapper(torch.randn(16)))
        assert torch.equal(edited.z_s, codes.z_s) and torch.equal(edited.z_a, codes.z_a)


def test_mappers_learn_a_change_and_each_touches_only_its_code():
    mappers = Mappers(clip_dim=16, shape_dim=8, appearance_dim=6, hidden=32)
    optimizer = torch.optim.Adam(mappers.parameters(), lr=1e-2)
    embedding, wanted = torch.randn(1, 16), torch.randn(1, 6)
    for _ in range(200):
        optimizer.zero_grad()
        ((mappers.appearance(embedding) - wanted) ** 2).mean().backward()
        optimizer.step()
    assert torch.allclose(mappers.appearance(embedding), wanted, atol=1e-2)
    assert mappers.shape.out.weight.grad is None  # the shape mapper never saw this loss
    codes = Codes(torch.zeros(8), torch.zeros(6))
    edited = apply_change(codes, "appearance", mappers.appearance(embedding)[0], strength=0.5)
    assert torch.equal(edited.z_s, codes.z_s)
    assert torch.allclose(edited.z_a, 0.5 * wanted[0], atol=1e-2)
    assert edited_targets("both") == ["shape", "appearance"]


def test_pull_into_prior_by_hand():
    mean, std = torch.tensor([1.0, 1.0]), torch.tensor([1.0, 2.0])
    z = torch.tensor([[1.0, 1.0], [1.6, 1.0], [1.0 + 3.0, 1.0 + 8.0]])
    assert torch.allclose(prior_distance(z, mean, std), torch.tensor([0.0, 0.6 / 2**0.5, 5.0 / 2**0.5]))
    pulled = pull_into_prior(z, mean, std, 1.0)
    assert torch.equal(pulled[:2], z[:2])  # already within: unchanged
    assert torch.allclose(prior_distance(pulled[2], mean, std), torch.tensor(1.0))
    assert torch.allclose(pulled[2] - mean, (z[2] - mean) * 2**0.5 / 5.0)  # straight towards the mean
    per_code = pull_into_prior(z, mean, std, torch.tensor([1.0, 1.0, 4.0 / 2**0.5]))
    assert torch.allclose(prior_distance(per_code[2], mean, std), torch.tensor(4.0 / 2**0.5))


@pytest.mark.parametrize("sees_code", [False, True])
def test_bounded_shape_mapper_keeps_edits_within_the_prior_and_identity_untrained(sees_code):
    prior = (Codes(torch.zeros(8), torch.zeros(6)), Codes(torch.full((8,), 0.5), torch.ones(6)))
    mappers = Mappers(clip_dim=16, shape_dim=8, appearance_dim=6, hidden=32, shape_sees_code=sees_code, max_prior_distance=1.0)
    torch.manual_seed(0)
    codes = Codes(2.0 * torch.randn(5, 8), torch.randn(5, 6))  # about 4 prior deviations out: further than the bound
    embedding = torch.randn(1, 16)
    assert torch.equal(mappers.change("shape", embedding, codes, prior), torch.zeros(5, 8))  # an untrained mapper moves nothing
    torch.nn.init.normal_(mappers.shape.out.weight, std=10.0)
    edited = codes.z_s + mappers.change("shape", embedding, codes, prior)
    own = prior_distance(codes.z_s, prior[0].z_s, prior[1].z_s)
    assert torch.all(own > 1.0)
    assert torch.all(prior_distance(edited, prior[0].z_s, prior[1].z_s) <= own + 1e-5)
    inside = Codes(0.1 * codes.z_s, codes.z_a)  # within the bound: edits go out to it, no further
    edited = inside.z_s + mappers.change("shape", embedding, inside, prior)
    assert torch.allclose(prior_distance(edited, prior[0].z_s, prior[1].z_s), torch.ones(5), atol=1e-5)


def fitted_errors(target: str, codes: Codes, wanted: torch.Tensor) -> dict[bool, float]:
    """The squared error left after fitting the `target` mapper, blind to the code and seeing it,
    to send `codes` to `wanted` under one prompt; an untrained one changes nothing."""
    prior = (Codes(torch.zeros(4), torch.zeros(2)), Codes(torch.ones(4), torch.ones(2)))
    embedding = torch.randn(1, 8, generator=torch.Generator().manual_seed(0))
    errors = {}
    for sees_code in (False, True):
        torch.manual_seed(0)
        mappers = Mappers(clip_dim=8, shape_dim=4, appearance_dim=2, hidden=32, **{f"{target}_sees_code": sees_code})
        assert not mappers.change(target, embedding, codes, prior).any()
        optimizer = torch.optim.Adam(mappers.parameters(), lr=1e-2)
        own = codes.z_s if target == "shape" else codes.z_a
        for _ in range(300):
            optimizer.zero_grad()
            error = ((own + mappers.change(target, embedding, codes, prior) - wanted) ** 2).mean()
            error.backward()
            optimizer.step()
        errors[sees_code] = float(error.detach())
    return errors


def test_a_shape_mapper_that_sees_the_code_moves_each_object_its_own_way():
    """One prompt, two objects, two different wanted codes: only the mapper that sees the code can
    send each where it should go."""
    codes = Codes(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]), torch.zeros(2, 2))
    errors = fitted_errors("shape", codes, torch.tensor([[0, 0, 1.0, 0], [0, 0, 0, 1.0]]))
    assert errors[True] < 1e-3 and errors[False] > 0.2


def test_an_appearance_mapper_that_sees_the_code_takes_every_object_to_one_colour():
    """One prompt ("a gray chair"), two objects of different colours, one wanted appearance code:
    the same change for both cannot reach it, the mapper that sees the code can."""
    codes = Codes(torch.zeros(2, 4), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    errors = fitted_errors("appearance", codes, torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    assert errors[True] < 1e-3 and errors[False] > 0.2


def test_losses_by_hand():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert torch.allclose(clip_distance(a, a), torch.zeros(1))
    assert torch.allclose(clip_distance(a, b), torch.ones(1))
    assert torch.allclose(clip_distance(a, -a), torch.full((1,), 2.0))
    # the render moved exactly the way the prompt differs from the neutral prompt
    assert torch.allclose(directional_clip_distance(a + b, a, 3 * b, torch.zeros(1, 2)), torch.zeros(1), atol=1e-6)
    before = Codes(torch.zeros(1, 4), torch.zeros(1, 2))
    after = Codes(torch.full((1, 4), 2.0), torch.ones(1, 2))
    assert torch.allclose(code_change_penalty(before, after), torch.tensor([5.0]))
    assert torch.allclose(semi_transparency(torch.tensor([0.0, 0.5, 1.0, 0.25])), torch.tensor([0.0, 1.0, 0.0, 0.75]))


def test_render_views_is_differentiable_in_both_codes():
    model = make_model()
    model.eval()
    codes = Codes(torch.randn(2, TINY.shape_dim, requires_grad=True), torch.randn(2, TINY.appearance_dim, requires_grad=True))
    images = render_views(model, codes, torch.tensor([0.0, 90.0]), torch.tensor([20.0, 30.0]), 12)
    assert images.shape == (2, 12, 12, 3)
    images.sum().backward()
    assert codes.z_a.grad.abs().sum() > 0
    # the deformation's last layer starts at zero, so z_s only reaches the pixels once it has trained
    assert codes.z_s.grad is not None


def test_clip_views_render_at_the_clips_input_size_unless_told(clip):
    """The editing objective renders its views at the CLIP's own input size (128 px for the shipped
    compact), or at `resolution` when given (the CLIP then resizes them)."""
    from clipnerf_ns.editing.edit import EditLossConfig, edit_losses

    model = make_model()
    model.eval()
    codes = Codes(torch.randn(1, TINY.shape_dim), torch.randn(1, TINY.appearance_dim))
    sizes, encode = [], clip.encode_image
    clip.encode_image = lambda images: sizes.append(tuple(images.shape)) or encode(images)
    try:
        target = clip.encode_text(["a red chair"])
        for resolution in (None, 24):
            losses = edit_losses(model, clip, codes, codes, target, torch.tensor([30.0]), torch.tensor([20.0]),
                                 EditLossConfig(resolution=resolution))
            assert torch.isfinite(losses["clip"])
    finally:
        clip.encode_image = encode
    assert clip.image_size == 128 and sizes == [(1, 128, 128, 3), (1, 24, 24, 3)]


def test_editor_mapper_mode_identity_and_strength(clip):
    model = make_model()
    model.eval()
    mappers = Mappers(clip.embed_dim, TINY.shape_dim, TINY.appearance_dim)
    editor = Editor(model, clip, mappers)
    codes = model.object_codes(torch.tensor(1)).detach()
    untouched = editor.apply(Edit(prompt="a red chair"), codes)
    assert torch.equal(untouched.z_s, codes.z_s) and torch.equal(untouched.z_a, codes.z_a)
    torch.nn.init.normal_(mappers.appearance.out.weight)
    half = editor.apply(Edit(prompt="a red chair", target="appearance", strength=0.5), codes)
    full = editor.apply(Edit(prompt="a red chair", target="appearance", strength=1.0), codes)
    assert torch.equal(half.z_s, codes.z_s)
    assert torch.allclose(full.z_a - codes.z_a, 2 * (half.z_a - codes.z_a), atol=1e-6)


def test_edit_checks_its_input():
    with pytest.raises(UserError, match="empty prompt"):
        Edit(prompt="   ").check()
    with pytest.raises(UserError, match="exactly one"):
        Edit().check()
    with pytest.raises(UserError, match="target"):
        Edit(prompt="a chair", target="colour").check()


def test_exemplar_files(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = (255, 0, 0, 255)
    Image.fromarray(rgba).save(tmp_path / "ex.png")
    image = read_exemplar(tmp_path / "ex.png")  # framed on the red square (alpha), as the CLIP's views are
    assert image.shape == (5, 5, 3)  # 4 px and an 8% margin on each side
    assert torch.allclose(image[0, 0], torch.ones(3)) and torch.allclose(image[2, 2], torch.tensor([1.0, 0, 0]))
    rgb = np.full((12, 20, 3), 200, np.uint8)  # no alpha: the object is what differs from the border colour
    rgb[3:9, 12:16] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    framed = read_exemplar(tmp_path / "photo.png")
    assert framed.shape == (7, 7, 3) and torch.allclose(framed[3, 3], torch.tensor([0.0, 0, 1]))
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(UserError, match="not a readable exemplar image"):
        read_exemplar(tmp_path / "notes.png")
    with pytest.raises(UserError, match="no such exemplar image file"):
        read_exemplar(tmp_path / "missing.png")


def test_exemplars_are_reframed_for_a_clip_that_sees_sizes(clip):
    """A photo has no scale: for a CLIP whose views keep sizes, an exemplar framed on its object
    is shrunk to the share of the frame a middling object fills, centred on white."""
    from clipnerf_ns.data.images import pad_to_fill
    from clipnerf_ns.editing.edit import SIZED_EXEMPLAR_FILL, exemplar_view

    red = torch.zeros(7, 7, 3)
    red[..., 0] = 1.0
    padded = pad_to_fill(red, 0.7)
    assert padded.shape == (10, 10, 3)
    assert torch.equal(padded[1:8, 1:8], red) and torch.equal(padded[0, 0], torch.ones(3))
    assert torch.equal(padded[9, 9], torch.ones(3)) and torch.equal(pad_to_fill(red, 1.0), red)
    model = make_model()
    model.category = "chairs"
    sized = clip.frame_extent("chairs") is not None
    view = exemplar_view(clip, model, red)
    assert view.shape[0] == (round(7 / SIZED_EXEMPLAR_FILL) if sized else 7)
    model.category = "lamps"  # a category the CLIP has no framing box for
    assert torch.equal(exemplar_view(clip, model, red), red)


def test_prompt_libraries(tmp_path):
    for category in ("chairs", "cars"):
        library = load_prompt_library(None, category)
        assert len(library.shape) >= 10 and len(library.appearance) >= 10
        assert category.rstrip("s") in library.neutral
    (tmp_path / "bad.yaml").write_text("neutral: a chair\nshape: []\nappearance: [a red chair]\n")
    with pytest.raises(UserError, match="'shape' must be a non-empty list"):
        load_prompt_library(tmp_path / "bad.yaml", "chairs")
    with pytest.raises(UserError, match="no prompt library"):
        load_prompt_library(None, "boats")
    example = load_prompt_library(Path(__file__).resolve().parents[2] / "configs" / "prompts" / "lamps.yaml", "lamps")
    assert example.neutral == "a lamp" and len(example.shape) == 5  # the README's own-category example


def test_a_prompt_names_a_part_by_the_librarys_part_words(tmp_path):
    chairs = load_prompt_library(None, "chairs")
    assert dict(chairs.parts).keys() == {"seat", "back", "base", "arms"}
    named = {p: chairs.named_part(p) for p in ("a chair with a red seat", "a chair with black legs", "A chair with a WHITE backrest",
                                                 "a red chair", "a chair with a red back and blue legs", "a chair with a red seatbelt")}
    assert named == {"a chair with a red seat": "seat", "a chair with black legs": "base", "A chair with a WHITE backrest": "back",
                     "a red chair": None, "a chair with a red back and blue legs": None, "a chair with a red seatbelt": None}
    assert load_prompt_library(None, "cars").named_part("a car with red wheels") is None  # no part words: no part edits
    (tmp_path / "bad.yaml").write_text("neutral: a chair\nshape: [a stool]\nappearance: [a red chair]\nparts: {seat: seat}\n")
    with pytest.raises(UserError, match="'parts' must map each part's name to a list"):
        load_prompt_library(tmp_path / "bad.yaml", "chairs")


def test_binary_tests_of_the_libraries(tmp_path):
    chairs = load_prompt_library(None, "chairs")
    by_prompt = {t.prompt: t for t in chairs.tests}
    assert {"a chair with a tall back", "an armchair", "a stool", "a chair with a slatted back"} <= set(by_prompt)
    assert all(t.synonyms for t in chairs.tests) and all(t.prompt in chairs.shape for t in chairs.tests)
    armchair, slatted = by_prompt["an armchair"], by_prompt["a chair with a slatted back"]
    chair = {"back_style": "solid", "armrests": True, "kind": "armchair", "back_height": 0.3, "back_tilt": 8.0}
    assert armchair.truth("chairs", chair) is True
    assert armchair.truth("chairs", {**chair, "armrests": False, "kind": "dining chair"}) is False
    assert armchair.truth("chairs", {**chair, "kind": "office chair"}) is None  # not among `where`
    assert slatted.truth("chairs", chair) is False and slatted.truth("chairs", {**chair, "back_style": "none"}) is None
    assert len(load_prompt_library(None, "cars").tests) >= 8
    bad = tmp_path / "bad.yaml"
    bad.write_text("neutral: a chair\nshape: [a stool]\nappearance: [a red chair]\n"
                   "tests: [{prompt: a stool, opposite: a chair, question: back_style, answer: maybe}]\n")
    with pytest.raises(UserError, match="has no answer 'maybe'"):
        load_prompt_library(bad, "chairs")
    bad.write_text("neutral: a chair\nshape: [a stool]\nappearance: [a red chair]\ntests: [{prompt: a stool}]\n")
    with pytest.raises(UserError, match=r"tests\[0\] needs the strings"):
        load_prompt_library(bad, "chairs")
