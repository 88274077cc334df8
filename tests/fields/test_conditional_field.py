import math

import pytest
import torch

from clipnerf_ns.errors import UserError
from clipnerf_ns.fields.conditional_field import (
    ConditionalField,
    FieldSizes,
    deformed_encoding,
    positional_encoding,
)
from tests.helpers import TINY


def randomized_field(seed: int = 0) -> ConditionalField:
    """A field whose deformation is not zero (the initial one is), so z_s matters."""
    torch.manual_seed(seed)
    field = ConditionalField(TINY)
    with torch.no_grad():
        for p in field.parameters():
            p.normal_(0.0, 0.5)
    return field


def test_positional_encoding_values():
    x = torch.tensor([[0.25, -0.5, 1.0]])
    enc = positional_encoding(x, 2)
    angles = [math.pi * 0.25, -math.pi * 0.5, math.pi, 2 * math.pi * 0.25, -2 * math.pi * 0.5, 2 * math.pi]
    expected = torch.tensor([[math.sin(a) for a in angles] + [math.cos(a) for a in angles]])
    assert enc.shape == (1, 12)
    torch.testing.assert_close(enc, expected, atol=1e-6, rtol=0)


def test_zero_deformation_is_the_plain_encoding():
    enc = positional_encoding(torch.rand(100, 3) * 2 - 1, 10)
    assert torch.equal(deformed_encoding(enc, torch.zeros_like(enc)), enc)


def test_initial_field_feeds_the_plain_encoding_to_the_trunk():
    torch.manual_seed(0)
    field = ConditionalField(TINY)
    seen = []
    field.trunk.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = torch.rand(50, 3) * 2 - 1
    field.density(x, torch.randn(50, TINY.shape_dim))
    assert torch.equal(seen[0], positional_encoding(x, TINY.position_frequencies))


def test_density_is_bit_identical_for_any_appearance_code():
    field = randomized_field()
    x, d = torch.rand(200, 3) * 2 - 1, torch.nn.functional.normalize(torch.randn(200, 3), dim=-1)
    z_s = torch.randn(200, TINY.shape_dim)
    sigma_1, rgb_1 = field(x, d, z_s, torch.randn(200, TINY.appearance_dim))
    sigma_2, rgb_2 = field(x, d, z_s, torch.randn(200, TINY.appearance_dim) * 5)
    assert torch.equal(sigma_1, sigma_2)
    assert (rgb_1 - rgb_2).abs().max() > 1e-3  # the appearance code does reach the colour


def test_shape_code_changes_density_through_the_deformation():
    field = randomized_field()
    x = torch.rand(200, 3) * 2 - 1
    sigma_1, _ = field.density(x, torch.zeros(200, TINY.shape_dim))
    sigma_2, _ = field.density(x, torch.ones(200, TINY.shape_dim))
    assert (sigma_1 - sigma_2).abs().max() > 1e-3


def test_outputs_are_valid_densities_and_colours():
    field = randomized_field()
    sigma, rgb = field(torch.rand(64, 3), torch.randn(64, 3), torch.randn(64, 8), torch.randn(64, 6))
    assert sigma.shape == (64, 1) and rgb.shape == (64, 3)
    assert (sigma >= 0).all() and ((rgb >= 0) & (rgb <= 1)).all()


@pytest.mark.parametrize(
    "change, message",
    [({"trunk_width": 0}, "trunk_width"), ({"shape_dim": 0}, "shape_dim"), ({"position_frequencies": 40}, "overflow")],
)
def test_impossible_sizes_are_named(change, message):
    sizes = FieldSizes(**{**TINY.__dict__, **change})
    with pytest.raises(UserError, match=message):
        ConditionalField(sizes)
