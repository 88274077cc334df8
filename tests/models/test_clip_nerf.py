import numpy as np
import pytest
import torch
from nerfstudio.cameras.rays import RayBundle

from clipnerf_ns.codes import Codes
from clipnerf_ns.data.cameras import orbit_camera
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.adversarial import PatchDiscriminator, adversarial_losses
from tests.helpers import TINY, make_model


def ray_bundle(object_index, rays=64):
    generator = torch.Generator().manual_seed(1)
    origins = torch.tensor([2.0, 0.0, 0.3]) + 0.05 * torch.randn(rays, 3, generator=generator)
    targets = 0.3 * (torch.rand(rays, 3, generator=generator) - 0.5)
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    return RayBundle(
        origins=origins, directions=directions, pixel_area=torch.ones(rays, 1),
        camera_indices=torch.zeros(rays, 1, dtype=torch.long),
        metadata={"object_index": torch.full((rays, 1), object_index, dtype=torch.long)},
    )


def test_gradients_reach_both_code_tables_of_the_objects_seen():
    model = make_model()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    target = torch.rand(64, 3)
    for _ in range(2):  # the deformation's last layer starts at zero: z_s gets gradients from step 2 on
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model.get_outputs(ray_bundle(1))["rgb"], target).backward()
        optimizer.step()
    for table in (model.shape_codes.weight, model.appearance_codes.weight):
        assert table.grad[1].abs().sum() > 0
        assert table.grad[0].abs().sum() == 0 and table.grad[2].abs().sum() == 0


def test_appearance_code_never_changes_geometry_in_a_rendered_view():
    model = make_model()
    with torch.no_grad():  # a field that is not at its initialisation, so codes matter
        for p in model.field.parameters():
            p.normal_(0.0, 0.3)
    model.eval()
    camera = orbit_camera(24, 30.0, 20.0)
    z_s = torch.randn(TINY.shape_dim)
    first = model.render_view(camera, Codes(z_s, torch.randn(TINY.appearance_dim)))
    second = model.render_view(camera, Codes(z_s, 3 * torch.randn(TINY.appearance_dim)))
    assert torch.equal(first["accumulation"], second["accumulation"])
    assert torch.equal(first["depth"], second["depth"])
    assert (first["rgb"] - second["rgb"]).abs().max() > 1e-3


def test_display_codes_render_like_explicit_codes():
    model = make_model()
    model.eval()
    codes = Codes(torch.randn(TINY.shape_dim), torch.randn(TINY.appearance_dim))
    camera = orbit_camera(16, 10.0, 30.0)
    model.set_display(codes)
    through_nerfstudio = model.get_outputs_for_camera(camera)
    assert torch.equal(through_nerfstudio["rgb"], model.render_view(camera, codes)["rgb"])
    model.set_display(2)
    assert torch.equal(model.get_outputs_for_camera(camera)["rgb"], model.render_view(camera, model.object_codes(torch.tensor(2)))["rgb"])
    with pytest.raises(UserError, match="out of range"):
        model.set_display(3)


def test_prior_samples_follow_the_code_tables():
    model = make_model()
    with torch.no_grad():
        model.shape_codes.weight.copy_(torch.tensor([[1.0] * 8, [3.0] * 8, [5.0] * 8]))
    drawn = model.sample_prior(4000, torch.Generator().manual_seed(0))
    assert drawn.z_s.shape == (4000, TINY.shape_dim) and drawn.z_a.shape == (4000, TINY.appearance_dim)
    assert abs(drawn.z_s.mean().item() - 3.0) < 0.1 and abs(drawn.z_s.std().item() - 2.0) < 0.1


def test_occupancy_refresh_prunes_empty_space_and_keeps_the_object():
    model = make_model(occupancy_warmup_steps=0, occupancy_resolution=8)
    with torch.no_grad():  # density only inside a ball of radius 0.5 (normalised units)
        model.field.density = lambda x, z: ((x.norm(dim=-1, keepdim=True) < 0.5).float() * 100.0, None)
    model.refresh_occupancy(step=0)
    grid = model.occupancy[0]
    assert grid[4, 4, 4] and not grid[0, 0, 0]
    assert 0.05 < grid.float().mean() < 0.5
    assert model.occupancy[1:3].sum() > 0 and model.occupancy_refreshes[:3].tolist() == [1, 1, 1]


def test_checkpoint_with_another_object_count_is_refused():
    model = make_model()
    state = model.state_dict()
    state["shape_codes.weight"] = torch.zeros(5, TINY.shape_dim)
    with pytest.raises(UserError, match="codes for 5 objects but the data has 3"):
        model.load_state_dict(state)


def test_impossible_configuration_is_named():
    with pytest.raises(UserError, match="num_coarse_samples must be at least 2"):
        make_model(num_coarse_samples=1)
    with pytest.raises(UserError, match="inbetween_rays must be at least 1"):
        make_model(inbetween_rays=0)
    for negative in ({"inbetween_haze_weight": -0.01}, {"code_attribute_weight": -1.0}):
        with pytest.raises(UserError, match="inbetween_haze_weight and code_attribute_weight must be at least 0"):
            make_model(**negative)


def test_adversarial_losses_move_only_their_own_player():
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(patch_size=8, width=8)
    fake = torch.rand(4, 8, 8, 3, requires_grad=True)
    losses = adversarial_losses(discriminator, torch.rand(4, 8, 8, 3), fake, r1_weight=10.0)
    params = list(discriminator.parameters())
    g_to_d = torch.autograd.grad(losses["generator"], params, retain_graph=True, allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in g_to_d)
    assert torch.autograd.grad(losses["generator"], fake, retain_graph=True)[0].abs().sum() > 0
    d_to_fake = torch.autograd.grad(losses["discriminator"] + losses["r1"], fake, retain_graph=True, allow_unused=True)[0]
    assert d_to_fake is None
    d_grads = torch.autograd.grad(losses["discriminator"] + losses["r1"], params)
    assert all(g.abs().sum() > 0 for g in d_grads)


def test_occupied_bounds_undo_the_dilation():
    """A block of occupied cells, dilated by one cell as the grids are: the bounds are the block's
    faces (within half a cell); an empty grid gives the scene box."""
    from clipnerf_ns.models.rendering import occupancy_from_density, occupied_bounds

    model = make_model()
    density = torch.zeros(1, 16, 16, 16)
    density[0, 4:8, 6:10, 0:12] = 1.0  # cells 4..7 in x: x from -0.25 to 0.0 in the unit box
    grid = occupancy_from_density(density, 0.5)[0]
    lo, hi = occupied_bounds(grid, model.box_min, model.box_max)
    np.testing.assert_allclose(lo, [-0.25, -0.125, -0.5], atol=1 / 32 + 1e-6)
    np.testing.assert_allclose(hi, [0.0, 0.125, 0.25], atol=1 / 32 + 1e-6)
    lo, hi = occupied_bounds(torch.zeros(16, 16, 16, dtype=torch.bool), model.box_min, model.box_max)
    np.testing.assert_allclose(lo, [-0.5] * 3) and np.testing.assert_allclose(hi, [0.5] * 3)


def test_inbetween_codes_lie_between_learnt_codes_or_come_from_the_prior():
    from clipnerf_ns.models.inbetween import inbetween_shape_codes

    learnt = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    codes = inbetween_shape_codes(learnt, torch.full((2,), 100.0), torch.full((2,), 0.1), 9, torch.Generator().manual_seed(0))
    assert codes.shape == (9, 2)
    segments, drawn = codes[:5], codes[5:]
    # on the triangle's edges (or at a corner): non-negative, and on an axis or on x + y = 1
    assert (segments >= 0).all() and (segments <= 1).all()
    assert ((segments.min(-1).values < 1e-6) | ((segments.sum(-1) - 1).abs() < 1e-6)).all()
    assert ((drawn - 100.0).abs() < 1.0).all()
    # reach 3: the lines run to t in [-1, 2], and the draws spread up to three times as far
    far = inbetween_shape_codes(learnt, torch.zeros(2), torch.ones(2), 2000, torch.Generator().manual_seed(0), reach=3.0)
    assert far[:1000].min() < -0.5 and far[:1000].max() > 1.5 and far[:1000].min() >= -1.0 - 1e-6 and far[:1000].max() <= 2.0 + 1e-6
    assert 1.5 < far[1000:].std() < 2.5  # the deviation of N(0, 1) scaled by U(1, 3): about 2.1


def test_inbetween_haze_term_trains_the_field_towards_solid_or_empty():
    """The term starts at its step; its gradient reaches the field (not the code tables), and a few
    steps of it alone lower the semi-transparency of in-between codes' rays."""
    model = make_model(inbetween_haze_weight=1.0, inbetween_rays=64, inbetween_start_step=5)  # untrained: fog everywhere
    model.train()
    assert "accumulation_inbetween" not in model.get_outputs(ray_bundle(1))
    model.training_step = 5
    optimizer = torch.optim.Adam(model.field.parameters(), lr=1e-2)
    bundle = ray_bundle(1)

    def term() -> torch.Tensor:
        torch.manual_seed(3)  # the same in-between codes and jitter each time
        return model.get_loss_dict(model.get_outputs(bundle), {"image": torch.rand(64, 4)})["inbetween_haze"]

    first = term()
    first.backward()
    assert model.shape_codes.weight.grad is None or model.shape_codes.weight.grad.abs().sum() == 0
    for _ in range(30):
        optimizer.zero_grad()
        term().backward()
        optimizer.step()
    assert first > 0.3 and term() < 0.5 * first.detach()


def test_attribute_targets_encode_numbers_yes_no_and_choices_and_leave_unknowns_free():
    from clipnerf_ns.models.attribute_codes import attribute_code_targets, attribute_groups

    attributes = [
        {"armrests": True, "seat_width": 0.4, "back_style": "none", "seat_shape": "round"},
        {"armrests": False, "seat_width": 0.6, "back_style": "solid", "seat_shape": "rectangular"},
        {"armrests": None, "seat_width": 0.5, "back_style": "slatted", "seat_shape": "round"},
    ]
    targets, mask, labels = attribute_code_targets(attributes, ["armrests", "seat_width", "back_style", "seat_shape"])
    assert labels == ["armrests", "seat_width", "back_style=none", "back_style=slatted", "back_style=solid", "seat_shape=round"]
    assert targets[:, 0].tolist() == [1.0, -1.0, 0.0] and mask[:, 0].tolist() == [1.0, 1.0, 0.0]
    assert targets[:, 1].mean().abs() < 1e-6 and abs(targets[:, 1].pow(2).mean().item() - 1.0) < 1e-5  # standardised
    assert targets[:, 2:5].tolist() == [[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]]
    assert targets[:, 5].tolist() == [1.0, -1.0, 1.0] and mask[:, 1:].min() == 1.0
    # one group per attribute; seat shape, a choice of two, is one yes/no dimension
    assert attribute_groups(labels) == [[0], [1], [2, 3, 4], [5]]
    with pytest.raises(UserError, match="no object of the collection has the attribute 'legs'"):
        attribute_code_targets(attributes, ["legs"])


def test_tied_code_dimensions_start_at_their_attributes_and_the_term_holds_them_there():
    """Only the tied dimensions of objects that have the attribute are pulled; the rest stay free."""
    from tests.helpers import TINY_OBJECTS

    attributes = [{"armrests": True, "seat_width": 0.3}, {"armrests": False}, {"armrests": True, "seat_width": 0.5}]
    assert len(attributes) == len(TINY_OBJECTS)

    model = make_model(attributes, code_attributes=("armrests", "seat_width"), code_attribute_weight=2.0)
    assert model.code_attribute_labels == ["armrests", "seat_width"]
    assert model.shape_codes.weight[:, 0].tolist() == [1.0, -1.0, 1.0]
    assert model.shape_codes.weight[0, 1] == -1.0 and model.shape_codes.weight[2, 1] == 1.0
    assert model.shape_codes.weight[1, 1].abs() < 0.1  # unknown: left at its random start
    with torch.no_grad():
        model.shape_codes.weight[:, :2] += 0.5
    loss = model.get_loss_dict(model.get_outputs(ray_bundle(1)), {"image": torch.rand(64, 4)})["code_attributes"]
    loss.backward()
    grad = model.shape_codes.weight.grad
    assert abs(loss.item() - 2.0 * (3 * 0.25 + 2 * 0.25) / 3) < 1e-5
    assert grad[1, 1] == 0 and (grad[:, 2:] == 0).all() and (grad[:, 0] > 0).all()
    with pytest.raises(UserError, match="code_attributes need 2 shape-code dimensions .* but shape_dim is 1"):
        from dataclasses import replace

        make_model(attributes, code_attributes=("armrests", "seat_width"), field=replace(TINY, shape_dim=1))
    assert "code_targets" not in make_model().state_dict()
