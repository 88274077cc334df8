"""The read shape mapper: a ridge regression from learnt codes to CLIP embeddings of their views,
and edits that move a code along a prompt's direction until it scores as the top objects do."""

import pytest
import torch

from clipnerf_ns.codes import Codes
from clipnerf_ns.editing.mappers import (
    Mappers,
    clamp_into_learnt,
    fit_code_to_clip,
    fixed_by_value,
    free_blends,
    held_step,
    holders_step,
    named_attributes,
    prior_distance,
    read_shape_change,
)


def attribute_world(count=400, seed=0):
    """Codes in prior units whose first two dimensions are correlated; the 'embedding' of each
    object's views reads dimension 0 (an attribute) into channel 0 and dimension 2 into channel 1."""
    generator = torch.Generator().manual_seed(seed)
    units = torch.randn(count, 4, generator=generator)
    units[:, 1] = 0.8 * units[:, 0] + 0.6 * units[:, 1]
    embeddings = torch.zeros(count, 3)
    embeddings[:, 0], embeddings[:, 1], embeddings[:, 2] = units[:, 0], units[:, 2], 1.0
    return units, embeddings


def test_fit_code_to_clip_recovers_a_linear_map_and_shrinks_with_the_ridge():
    generator = torch.Generator().manual_seed(1)
    units, true = torch.randn(50, 4, generator=generator), torch.randn(4, 6, generator=generator)
    embeddings = units @ true + torch.tensor([0.5, -1.0, 0.0, 2.0, 0.3, 0.1])  # with an intercept
    assert torch.allclose(fit_code_to_clip(units, embeddings, ridge=0.0), true, atol=1e-4)
    assert fit_code_to_clip(units, embeddings, ridge=1e4).norm() < 0.1 * true.norm()


def test_read_change_reaches_the_percentile_along_the_covariance_and_spares_objects_already_there():
    units, embeddings = attribute_world()
    code_to_clip = fit_code_to_clip(units, embeddings, ridge=1.0)
    covariance = torch.cov(units.T)
    direction = torch.tensor([[1.0, 0.0, 0.0]])  # "more of channel 0"
    subjects = torch.tensor([[-2.0, -1.6, 0.5, 0.0], [3.0, 2.4, 0.0, 0.0]])  # lacking it / already far along
    change = read_shape_change(subjects, direction.expand(2, -1), code_to_clip, units, covariance, 90.0)
    gradient = (direction @ code_to_clip.T)[0]
    target = torch.quantile(units @ gradient, 0.9)
    assert torch.allclose((subjects[0] + change[0]) @ gradient, target, atol=1e-4)
    assert torch.equal(change[1], torch.zeros(4))
    # the step is the code difference between high and low scorers: it carries the correlated dimension 1 along,
    # and leaves the dimensions the attribute does not vary with alone
    step = change[0] / change[0].norm()
    expected = covariance @ gradient
    assert torch.allclose(step, expected / expected.norm(), atol=1e-5)
    assert step[1] > 0.5 * step[0] and abs(step[3]) < 0.1


def test_read_mappers_edit_state_round_trip_and_bound():
    units, embeddings = attribute_world()
    mean, std = Codes(torch.full((4,), 0.5), torch.zeros(2)), Codes(torch.full((4,), 2.0), torch.ones(2))
    neutral = torch.tensor([0.0, 0.0, 1.0])
    mappers = Mappers(clip_dim=3, shape_dim=4, appearance_dim=2, read_shape={"objects": len(units), "percentile": 95.0})
    assert mappers.shape_is_read and not list(mappers.shape.parameters())  # nothing to train
    mappers.shape.fit(units, embeddings, neutral, ridge=1.0)
    codes = Codes(mean.z_s + std.z_s * torch.tensor([[-1.0, -0.8, 0.0, 0.0]]), torch.zeros(1, 2))
    prompt = torch.tensor([[0.7, 0.0, 0.7]])
    change = mappers.change("shape", prompt, codes, (mean, std))
    assert change[0, 0] > 0 and abs(float(change[0, 3])) < 0.2 * float(change[0, 0])  # along the attribute
    # an exemplar is measured from the mean view, not from the neutral prompt
    assert not torch.allclose(mappers.change("shape", prompt, codes, (mean, std), from_image=True), change)

    again = Mappers(clip_dim=3, shape_dim=4, appearance_dim=2, read_shape={"objects": len(units), "percentile": 95.0})
    again.load_state_dict(mappers.state_dict())
    assert torch.equal(again.change("shape", prompt, codes, (mean, std)), change)

    bounded = Mappers(clip_dim=3, shape_dim=4, appearance_dim=2, max_prior_distance=0.6,
                      read_shape={"objects": len(units), "percentile": 99.0})
    bounded.load_state_dict(mappers.state_dict())
    edited = codes.z_s + bounded.change("shape", prompt * 5, codes, (mean, std))
    assert float(prior_distance(edited, mean.z_s, std.z_s)) <= max(0.6, float(prior_distance(codes.z_s, mean.z_s, std.z_s))) + 1e-5


@pytest.mark.parametrize("percentile", [60.0, 99.0])
def test_a_higher_percentile_moves_further(percentile):
    units, embeddings = attribute_world()
    code_to_clip, covariance = fit_code_to_clip(units, embeddings, 1.0), torch.cov(units.T)
    subject, direction = torch.tensor([[-2.0, -1.6, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    low = read_shape_change(subject, direction, code_to_clip, units, covariance, 50.0).norm()
    assert read_shape_change(subject, direction, code_to_clip, units, covariance, percentile).norm() > low


def two_attribute_world(count=400, seed=0):
    """Codes whose first two dimensions are correlated (0.4); channel 0 of the 'embedding' reads
    dimension 0 (the edited attribute), channel 1 dimension 1 (another attribute, to be held)."""
    generator = torch.Generator().manual_seed(seed)
    units = torch.randn(count, 4, generator=generator)
    units[:, 1] = 0.4 * units[:, 0] + 0.92 * units[:, 1]
    embeddings = torch.stack([units[:, 0], units[:, 1], torch.ones(count)], -1)
    return units, embeddings


def test_a_held_step_reaches_as_far_and_moves_the_held_score_less():
    units, embeddings = two_attribute_world()
    code_to_clip, covariance = fit_code_to_clip(units, embeddings, 1.0), torch.cov(units.T)
    subject, direction = torch.tensor([[-1.5, -1.2, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    other = torch.tensor([[0.0, 1.0, 0.0]])
    plain = read_shape_change(subject, direction, code_to_clip, units, covariance, 90.0)
    held = read_shape_change(subject, direction, code_to_clip, units, covariance, 90.0, other, hold=50.0)
    edited, other_gradient = (direction @ code_to_clip.T)[0], (other @ code_to_clip.T)[0]
    assert torch.allclose(held[0] @ edited, plain[0] @ edited, atol=1e-4)  # the same predicted score reached
    assert abs(float(held[0] @ other_gradient)) < 0.2 * abs(float(plain[0] @ other_gradient))  # the other one held
    assert torch.allclose(held_step(edited[None], covariance, None, 5.0, 0.5), covariance @ edited)  # nothing to hold
    # the prompt's own synonym (covariance cosine 1) is not held: the step stays Sigma a
    same = held_step(edited[None], covariance, (2.0 * direction) @ code_to_clip.T, 50.0, 0.5)
    assert torch.allclose(same[0], covariance @ edited, atol=1e-5)


def test_read_mappers_of_runs_before_held_prompts_load_and_hold_nothing():
    units, embeddings = two_attribute_world()
    mean, std = Codes(torch.zeros(4), torch.zeros(2)), Codes(torch.ones(4), torch.ones(2))
    options = {"objects": len(units), "percentile": 90.0, "held_prompts": 1, "hold": 50.0}
    mappers = Mappers(clip_dim=3, shape_dim=4, appearance_dim=2, read_shape=options)
    neutral = torch.tensor([0.0, 0.0, 1.0])
    mappers.shape.fit(units, embeddings, neutral, ridge=1.0, held_embeddings=torch.tensor([[0.0, 1.0, 1.0]]))
    assert torch.equal(mappers.shape.held, torch.tensor([[0.0, 1.0, 0.0]]))  # measured from the neutral prompt
    codes, prompt = Codes(torch.tensor([[-1.5, -1.2, 0.0, 0.0]]), torch.zeros(1, 2)), torch.tensor([[1.0, 0.0, 1.0]])
    old_state = {k: v for k, v in mappers.state_dict().items() if k != "shape.held"}
    old = Mappers(clip_dim=3, shape_dim=4, appearance_dim=2, read_shape=options)
    old.load_state_dict(old_state)
    assert torch.equal(old.shape.held, torch.zeros(1, 3))
    plain = Mappers(clip_dim=3, shape_dim=4, appearance_dim=2, read_shape={**options, "hold": 0.0})
    plain.load_state_dict(mappers.state_dict())
    assert torch.allclose(old.change("shape", prompt, codes, (mean, std)), plain.change("shape", prompt, codes, (mean, std)))
    assert not torch.allclose(mappers.change("shape", prompt, codes, (mean, std)), plain.change("shape", prompt, codes, (mean, std)))


def test_clamped_edits_stay_in_the_learnt_codes_range_and_do_not_push_outliers_further():
    learnt = torch.tensor([[-1.0, 0.0], [1.0, 2.0]])
    units = torch.tensor([[0.0, 1.0], [0.0, 3.0]])  # the second lies past the learnt range in dimension 1
    change = torch.tensor([[5.0, -5.0], [0.5, 1.0]])
    assert torch.equal(clamp_into_learnt(units, change, learnt), torch.tensor([[1.0, -1.0], [0.5, 0.0]]))
    assert torch.equal(clamp_into_learnt(units, -change, learnt)[1], torch.tensor([-0.5, -1.0]))  # back in: free


def test_a_read_mapper_with_clamp_keeps_the_edit_within_the_learnt_objects():
    """An object already high in the correlated dimension 1, asked for the most of dimension 0:
    the plain step carries dimension 1 past every learnt object; the clamped mapper stops there."""
    units, embeddings = attribute_world()
    options = {"objects": units.shape[0], "percentile": 100.0}
    clamped, free = (Mappers(3, 4, 2, read_shape={**options, "clamp": clamp}).shape for clamp in (True, False))
    for mapper in (clamped, free):
        mapper.fit(units, embeddings, torch.zeros(3), ridge=1.0)
    subject, prompt = torch.tensor([[-2.0, 2.5, 0.5, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    low, high = units.min(0).values, units.max(0).values
    free_edit, clamped_edit = subject + free(prompt, subject), subject + clamped(prompt, subject)
    assert free_edit[0, 1] > high[1] + 1.0  # past every learnt object
    assert torch.allclose(clamped_edit, torch.minimum(torch.maximum(free_edit, low), high))
    assert clamped_edit[0, 0] > 0.5 * high[0]  # the asked dimension still moves most of the way


def armchair_world(count=400, seed=0):
    """Codes of stools and chairs: dimension 0 is +1 with a back, -1 without; dimension 1 is +1 with
    arms (only ever on chairs with a back), -1 without; dimension 2 a free attribute (leg length).
    The 'embedding' of each object's views reads arms into channel 0."""
    generator = torch.Generator().manual_seed(seed)
    back = torch.rand(count, generator=generator) < 0.7
    arms = back & (torch.rand(count, generator=generator) < 0.4)
    legs = torch.randn(count, generator=generator)
    units = torch.stack([back.float() * 2 - 1, arms.float() * 2 - 1, legs], -1)
    embeddings = torch.stack([units[:, 1], torch.ones(count)], -1)
    return units, embeddings


def test_a_holders_step_adds_what_every_holder_has_and_keeps_what_they_vary_in():
    """Arms asked of a stool: the straight step moves the arms dimension and only part of the way
    to a back (a back comes with arms only in 40% of chairs); the holders' step adds the back every
    armchair has, and keeps the stool's own legs."""
    units, embeddings = armchair_world()
    code_to_clip, covariance = fit_code_to_clip(units, embeddings, 1.0), torch.cov(units.T)
    stool, chair_with_arms = torch.tensor([[-1.0, -1.0, 1.5]]), torch.tensor([[1.0, 1.0, -0.5]])
    direction = torch.tensor([[1.0, 0.0]])
    gradient = direction @ code_to_clip.T
    straight = stool + read_shape_change(stool, direction, code_to_clip, units, covariance, 99.0)
    assert straight[0, 0] < 0.5  # no back: what the edit needs is not there
    into = stool + holders_step(stool, gradient, units, fraction=0.25, shared=0.1)[0]
    assert torch.allclose(into[0, :2], torch.tensor([1.0, 1.0]), atol=0.05)  # a back and arms, as every holder
    assert 1.2 < float(into[0, 2]) < 1.5  # its own legs, nearly: holders' legs vary as everyone's do
    assert torch.equal(holders_step(chair_with_arms, gradient, units, 0.25, 0.1)[0], torch.zeros(1, 3))  # has them
    # when everything counts as shared, the stool becomes an average armchair: its legs too
    average = stool + holders_step(stool, gradient, units, 0.25, 1e6)[0]
    assert torch.allclose(average[0, :2], torch.tensor([1.0, 1.0]), atol=1e-4) and abs(float(average[0, 2])) < 0.5


def test_a_holders_step_takes_a_choice_value_away_by_giving_a_holders_value():
    """Arms asked of an office chair where no armchair has a pedestal (leg style: one dimension per
    value, pedestal / round / straight, +1 for the chair's own; leg count: five, four or three with
    the style): a Gaussian takes the pedestal away and spreads the freed value over the others,
    leaving no base at all; with the choice named, the chair ends on the leg style of the nearest
    holder, one value on, and on the leg count that goes with it."""
    generator = torch.Generator().manual_seed(0)
    style = torch.multinomial(torch.tensor([0.3, 0.4, 0.3]), 400, replacement=True, generator=generator)
    arms = (style != 0) & (torch.rand(400, generator=generator) < 0.5)
    count = torch.tensor([1.0, 0.0, -1.0])[style]
    units = torch.cat([(arms.float() * 2 - 1)[:, None], torch.nn.functional.one_hot(style, 3) * 2.0 - 1, count[:, None]], -1)
    embeddings = torch.stack([units[:, 0], torch.ones(400)], -1)
    gradient = torch.tensor([[1.0, 0.0]]) @ fit_code_to_clip(units, embeddings, 1.0).T
    office_chair = torch.tensor([[-1.0, 1.0, -1.0, -1.0, 1.0]])
    spread = office_chair + holders_step(office_chair, gradient, units, fraction=0.25, shared=0.1)[0]
    assert float(spread[0, 1]) < -0.9 and float(spread[0, 2:4].max()) < 0.5  # no pedestal, and no leg style on either
    chosen = office_chair + holders_step(office_chair, gradient, units, 0.25, 0.1, attributes=[[1, 2, 3]])[0]
    assert float(chosen[0, 0]) > 0.9  # arms
    legs = chosen[0, 1:4].tolist()
    assert sorted(legs) == [-1.0, -1.0, 1.0] and legs[0] == -1.0  # round or straight legs
    assert abs(float(chosen[0, 4]) - (0.0 if legs[1] == 1.0 else -1.0)) < 0.05  # as many as the holders with them have
    round_chair = torch.tensor([[-1.0, -1.0, 1.0, -1.0, 0.0]])  # keeps its own value: the plain Gaussian step
    assert torch.equal(holders_step(round_chair, gradient, units, 0.25, 0.1, attributes=[[1, 2, 3]])[0][:, [0, 4]],
                       holders_step(round_chair, gradient, units, 0.25, 0.1)[0][:, [0, 4]])


def test_a_holders_step_changes_two_choices_and_ends_on_a_value_of_each():
    """Arms asked of a backless stool on a pedestal, where every armchair has a slatted or solid back
    on round or straight legs: both choices change, and the second refit keeps the first choice's
    value (holders narrowed to those with it), so both groups end one value on, a pair some holder has."""
    generator = torch.Generator().manual_seed(1)
    back = torch.multinomial(torch.tensor([0.3, 0.35, 0.35]), 600, replacement=True, generator=generator)
    legs = torch.multinomial(torch.tensor([0.3, 0.35, 0.35]), 600, replacement=True, generator=generator)
    arms = (back != 0) & (legs != 0) & (torch.rand(600, generator=generator) < 0.6)
    one_hot = torch.nn.functional.one_hot
    units = torch.cat([(arms.float() * 2 - 1)[:, None], one_hot(back, 3) * 2.0 - 1, one_hot(legs, 3) * 2.0 - 1], -1)
    embeddings = torch.stack([units[:, 0], torch.ones(600)], -1)
    gradient = torch.tensor([[1.0, 0.0]]) @ fit_code_to_clip(units, embeddings, 1.0).T
    stool = torch.tensor([[-1.0, 1.0, -1.0, -1.0, 1.0, -1.0, -1.0]])
    edited = stool + holders_step(stool, gradient, units, 0.25, 0.1, attributes=[[1, 2, 3], [4, 5, 6]])[0]
    assert float(edited[0, 0]) > 0.9
    for group in ([1, 2, 3], [4, 5, 6]):
        assert torch.allclose(edited[0, group].sort().values, torch.tensor([-1.0, -1.0, 1.0]), atol=1e-5)
        assert float(edited[0, group[0]]) < -0.99  # not the stool's own value
    assert ((units[arms][:, 1:] - edited[0, 1:]).abs() < 1e-4).all(-1).any()  # a back and legs some armchair has


def test_a_holders_step_keeps_what_the_prompt_does_not_name_though_the_top_scorers_share_it():
    """Arms asked of an office chair with a short back, where the CLIP ranks armchairs on four legs
    and with taller backs highest (as the shipped CLIP does): the top scorers' step also takes the
    pedestal away and raises the back. With the named attributes found, every chair with arms holds
    the prompt (office armchairs too), and the chair keeps its pedestal and its back height."""
    generator = torch.Generator().manual_seed(0)
    arms, pedestal = (torch.rand(400, generator=generator) < 0.3 for _ in range(2))
    height = torch.randn(400, generator=generator)
    legs = torch.stack([pedestal, ~pedestal], -1).float() * 2 - 1  # a choice: pedestal or four legs
    units = torch.cat([(arms.float() * 2 - 1)[:, None], height[:, None], legs, torch.randn(400, 1, generator=generator)], -1)
    score = 2 * units[:, 0] - 1.5 * pedestal.float() + 0.5 * height  # the CLIP's bias
    gradient = torch.tensor([[1.0, 0.0]]) @ fit_code_to_clip(units, torch.stack([score, torch.ones(400)], -1), 1.0).T
    attributes = [[0], [1], [2, 3]]
    top = gradient @ units.T >= torch.quantile(gradient @ units.T, 0.85)
    assert named_attributes(top, units, attributes, 0.6).tolist() == [[True, False, False]]  # arms only
    office_chair = torch.tensor([[-1.0, -1.0, 1.0, -1.0, 0.3]])
    top_scorers = office_chair + holders_step(office_chair, gradient, units, 0.15, 0.1, attributes)[0]
    assert float(top_scorers[0, 0]) > 0.99 and float(top_scorers[0, 1]) > -0.8  # arms, and a taller back
    assert top_scorers[0, 2:4].tolist() == [-1.0, 1.0]  # four legs: no top scorer has a pedestal
    named = office_chair + holders_step(office_chair, gradient, units, 0.15, 0.1, attributes, named=0.6)[0]
    assert float(named[0, 0]) > 0.99 and abs(float(named[0, 1]) + 1.0) < 1e-3  # arms, its own back height
    assert named[0, 2:4].tolist() == [1.0, -1.0]  # its pedestal


def test_a_holders_step_replaces_a_value_no_holder_has_and_keeps_one_they_have():
    """Arms asked of a stool, whose back height is the 'no back' value (-2) no chair with arms has:
    its back and back height, not named by the prompt, become the holders' (a back of their usual
    height); a chair with a back keeps its own back height, which holders have too."""
    generator = torch.Generator().manual_seed(2)
    back = torch.rand(400, generator=generator) < 0.7
    arms = back & (torch.rand(400, generator=generator) < 0.4)
    height = torch.where(back, 0.5 + 0.3 * torch.randn(400, generator=generator), torch.full((400,), -2.0))
    units = torch.stack([back.float() * 2 - 1, height, arms.float() * 2 - 1, torch.randn(400, generator=generator)], -1)
    gradient = torch.tensor([[1.0, 0.0]]) @ fit_code_to_clip(units, torch.stack([units[:, 2], torch.ones(400)], -1), 1.0).T
    attributes = [[0], [1], [2]]
    top = gradient @ units.T >= torch.quantile(gradient @ units.T, 0.85)
    assert named_attributes(top, units, attributes, 0.6).tolist() == [[False, False, True]]  # arms only
    stool, chair = torch.tensor([[-1.0, -2.0, -1.0, 0.4]]), torch.tensor([[1.0, 0.9, -1.0, 0.4]])
    stool_after = stool + holders_step(stool, gradient, units, 0.15, 0.03, attributes, named=0.6)[0]
    assert float(stool_after[0, 0]) > 0.99 and float(stool_after[0, 2]) > 0.99  # a back, and arms
    assert abs(float(stool_after[0, 1]) - float(units[arms, 1].mean())) < 0.1  # the holders' back height
    chair_after = chair + holders_step(chair, gradient, units, 0.15, 0.03, attributes, named=0.6)[0]
    assert float(chair_after[0, 2]) > 0.99 and abs(float(chair_after[0, 1]) - 0.9) < 1e-3  # arms, its own height


def test_a_choice_value_the_prompt_does_not_need_changed_is_kept_with_what_it_fixes():
    """Slats asked of an office chair where no slatted chair has a pedestal (back style and leg style
    are choices; a pedestal fixes the leg count): the back becomes slatted, and the
    pedestal and its leg count are kept through the rest of the edit (the tied space composes what
    the collection never paired), not replaced by a slatted holder's legs."""
    generator = torch.Generator().manual_seed(3)
    back = torch.multinomial(torch.tensor([0.3, 0.3, 0.4]), 600, replacement=True, generator=generator)
    pedestal = (back != 1) & (torch.rand(600, generator=generator) < 0.2)
    count = torch.where(pedestal, torch.tensor(0.8), -0.14 + 0.3 * torch.randn(600, generator=generator))
    one_hot = torch.nn.functional.one_hot
    units = torch.cat([one_hot(back, 3) * 2.0 - 1, one_hot(pedestal.long(), 2).flip(-1) * 2.0 - 1, count[:, None],
                       torch.randn(600, 1, generator=generator)], -1)
    attributes = [[0, 1, 2], [3, 4], [5]]
    assert fixed_by_value(units, [3, 4], attributes).tolist() == [[False, False, True], [False, False, False]]
    gradient = torch.tensor([[1.0, 0.0]]) @ fit_code_to_clip(units, torch.stack([units[:, 1], torch.ones(600)], -1), 1.0).T
    office_chair = torch.tensor([[-1.0, -1.0, 1.0, 1.0, -1.0, 0.8, 0.0]])
    step, keep = holders_step(office_chair, gradient, units, 0.15, 0.03, attributes, named=0.6)
    assert torch.allclose((office_chair + step)[0, :3], torch.tensor([-1.0, 1.0, -1.0]), atol=1e-5)  # slatted
    assert keep[0].tolist() == [False, False, False, True, True, True, False]  # its pedestal and five legs
    step, keep = holders_step(office_chair, gradient, units, 0.15, 0.03, attributes)  # without named attributes
    assert not keep.any() and float((office_chair + step)[0, 3]) < -0.99  # a slatted holder's legs
    # the read mapper leaves them through its straight step and clamp too
    mapper = Mappers(2, 7, 2, read_shape={"objects": 600, "percentile": 99.0, "clamp": True, "holders": 0.15,
                                          "shared": 0.03, "attributes": attributes, "named": 0.6}).shape
    mapper.fit(units, torch.stack([units[:, 1], torch.ones(600)], -1), torch.tensor([0.0, 1.0]), ridge=1.0)
    edited = office_chair + mapper(torch.tensor([[1.0, 1.0]]), office_chair)
    assert float(edited[0, 1]) > 0.9 and torch.equal(edited[0, 3:6], office_chair[0, 3:6])


def test_a_read_mapper_with_holders_gives_a_stool_a_back_with_its_arms():
    units, embeddings = armchair_world()
    options = {"objects": units.shape[0], "percentile": 99.0}
    plain, holders = (Mappers(2, 3, 2, read_shape={**options, "holders": h}).shape for h in (None, 0.25))
    for mapper in (plain, holders):
        mapper.fit(units, embeddings, torch.tensor([0.0, 1.0]), ridge=1.0)
    stool, prompt = torch.tensor([[-1.0, -1.0, 1.5]]), torch.tensor([[1.0, 1.0]])
    assert float((stool + plain(prompt, stool))[0, 0]) < 0.5
    assert float((stool + holders(prompt, stool))[0, 0]) > 0.9


def test_holders_ranked_by_the_prompt_are_chairs_where_its_direction_ranks_stools_first():
    """Stools (dimension 1 at -1: no back) and chairs (+1) whose back height (dimension 0, 0 to 2;
    a stool's -1) the 'embedding' reads into channel 0 as shortness; channel 1 reads having a back.
    "a chair with a short back" is (1, 1), the neutral "a chair" (0, 1): along the direction (1, 0)
    stools score highest, as "a chair with a short back" did for the shipped CLIP; the prompt itself
    ranks short-backed chairs first. Percentile 0 leaves the holders' step alone to compare."""
    generator = torch.Generator().manual_seed(0)
    back = torch.rand(400, generator=generator) < 0.7
    height = torch.where(back, 2 * torch.rand(400, generator=generator), torch.tensor(-1.0))
    units = torch.stack([height, back.float() * 2 - 1, torch.randn(400, generator=generator)], -1)
    embeddings = torch.stack([-height, back.float() * 2 - 1], -1)
    options = {"objects": 400, "percentile": 0.0, "holders": 0.15, "shared": 0.05}
    by_prompt, by_direction = (Mappers(2, 3, 2, read_shape={**options, "holders_rank": rank}).shape for rank in ("prompt", "direction"))
    for mapper in (by_prompt, by_direction):
        mapper.fit(units, embeddings, torch.tensor([0.0, 1.0]), ridge=1.0)
    chair, prompt = torch.tensor([[1.8, 1.0, 0.3]]), torch.tensor([[1.0, 1.0]])
    kept = chair + by_prompt(prompt, chair)
    assert float(kept[0, 1]) > 0.9 and float(kept[0, 0]) < 0.6  # a chair still, its back lower
    assert float((chair + by_direction(prompt, chair))[0, 1]) < -0.9  # a stool
    exemplar = by_prompt(prompt, chair, from_image=True)  # an exemplar image ranks by its direction, as before
    assert torch.equal(exemplar, by_direction(prompt, chair, from_image=True))
    # the whole edit (percentile 99): the step stops at the holders' score, not at the stools'
    whole = {**options, "percentile": 99.0}
    by_prompt, by_direction = (Mappers(2, 3, 2, read_shape={**whole, "holders_rank": rank}).shape for rank in ("prompt", "direction"))
    for mapper in (by_prompt, by_direction):
        mapper.fit(units, embeddings, torch.tensor([0.0, 1.0]), ridge=1.0)
    short = chair + by_prompt(prompt, chair)
    assert float(short[0, 1]) > 0.5 and float(short[0, 0]) < 0.6
    assert float((chair + by_direction(prompt, chair))[0, 1]) < -0.5


def test_free_blends_keep_the_tied_dimensions_and_move_the_free_ones_half_way_to_the_nearest_learnt_codes():
    # two tied dimensions, two free ones; learnt codes 1 and 3 are nearest the edit on the tied ones
    learnt = torch.tensor([[5.0, 5.0, 9.0, 9.0], [1.0, 0.0, 2.0, -2.0], [-4.0, 0.0, 7.0, 7.0], [1.0, 0.5, 4.0, 0.0]])
    edited = torch.tensor([1.0, 0.2, 0.0, 0.0])
    blends = free_blends(edited, learnt, tied=2, count=2)
    assert torch.equal(blends[0], edited)  # the edit itself comes first
    assert torch.equal(blends[1:, :2], edited[:2].expand(2, -1))  # the attributes are the edit's
    assert torch.equal(blends[1:, 2:], torch.tensor([[1.0, -1.0], [2.0, 0.0]]))  # half way to codes 1, then 3
    assert free_blends(edited, learnt, tied=2, count=9).shape == (5, 4)  # no more variants than learnt codes


def test_a_read_mapper_offers_variants_of_a_tied_edit_within_its_bound_and_none_without_ties():
    units, embeddings = attribute_world()
    mean, std = Codes(torch.full((4,), 0.5), torch.zeros(2)), Codes(torch.full((4,), 2.0), torch.ones(2))
    options = {"objects": len(units), "percentile": 95.0, "holders": 0.15, "attributes": [[0]], "clean": 3}
    mappers = Mappers(clip_dim=3, shape_dim=4, appearance_dim=2, read_shape=options)
    mappers.shape.fit(units, embeddings, torch.tensor([0.0, 0.0, 1.0]), ridge=1.0)
    z_s = mean.z_s + std.z_s * torch.tensor([-1.0, -0.8, 0.0, 0.0])
    prompt = torch.tensor([[0.7, 0.0, 0.7]])
    change = mappers.change("shape", prompt, Codes(z_s[None], torch.zeros(1, 2)), (mean, std))[0]
    variants = mappers.shape_variants(z_s, change, (mean, std))
    assert variants.shape == (4, 4) and torch.equal(variants[0], change)
    assert torch.allclose(variants[:, 0], change[0].expand(4))  # the tied dimension is the edit's
    assert not torch.allclose(variants[1:, 1:], change[1:].expand(3, -1))  # the free ones vary
    # with a bound, every variant stays within it too
    bounded = Mappers(clip_dim=3, shape_dim=4, appearance_dim=2, max_prior_distance=0.8, read_shape=options)
    bounded.load_state_dict(mappers.state_dict())
    change = bounded.change("shape", prompt, Codes(z_s[None], torch.zeros(1, 2)), (mean, std))[0]
    distances = prior_distance(z_s + bounded.shape_variants(z_s, change, (mean, std)), mean.z_s, std.z_s)
    assert (distances <= max(0.8, float(prior_distance(z_s, mean.z_s, std.z_s))) + 1e-5).all()
    untied = Mappers(clip_dim=3, shape_dim=4, appearance_dim=2, read_shape={**options, "attributes": []})
    assert untied.shape_variants(z_s, change, (mean, std)).shape == (1, 4)
