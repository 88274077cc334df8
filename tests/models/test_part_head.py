"""The part head: per-point part probabilities, the appearance code of a part edit, its file."""

import pytest
import torch

from clipnerf_ns.codes import model_fingerprint
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.part_head import (
    PartHead,
    load_part_head,
    part_accuracy,
    part_appearance,
    save_part_head,
    train_part_head,
)


def halves(count: int, generator: torch.Generator):
    """Points in [-1, 1]^3 labelled by the sign of x ("left" / "right"), for two shape codes."""
    points = torch.rand(count, 3, generator=generator) * 2 - 1
    z_s = torch.randn(2, 4, generator=generator)[torch.arange(count) % 2]
    return points, z_s, (points[:, 0] > 0).long()


def test_part_appearance_takes_each_parts_change_by_its_probability():
    head = PartHead(("left", "right", "top"), shape_dim=4)
    points, z_s = torch.rand(50, 3) * 2 - 1, torch.randn(1, 4)
    z_a = torch.randn(1, 6)
    same = torch.randn(6)
    # weights sum to one: the same change on every part is the plain appearance change
    assert torch.allclose(part_appearance(head, points, z_s, z_a, same.expand(1, 3, 6)), z_a + same, atol=1e-5)
    assert torch.allclose(part_appearance(head, points, z_s, z_a, torch.zeros(1, 3, 6)), z_a.expand(50, -1))
    one = torch.zeros(1, 3, 6)
    one[0, 2] = 1.0  # only "top" changes: each point by p(top)
    p_top = torch.softmax(head(points, z_s), -1)[:, 2:3]
    assert torch.allclose(part_appearance(head, points, z_s, z_a, one) - z_a, p_top.expand(-1, 6), atol=1e-6)
    with pytest.raises(UserError, match="change 2 parts; this run's part head knows 3"):
        part_appearance(head, points, z_s, z_a, torch.zeros(1, 2, 6))
    with pytest.raises(UserError, match="no part head"):
        part_appearance(None, points, z_s, z_a, one)


def test_train_part_head_learns_a_labelling_and_measures_it():
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    head = PartHead(("left", "right"), shape_dim=4)
    before = part_accuracy(head, *halves(2000, generator))
    train_part_head(head, *halves(20000, generator), steps=300, batch=1024, generator=generator)
    after = part_accuracy(head, *halves(2000, generator))
    assert after["all"] > 0.97 and after["left"] > 0.95 and after["right"] > 0.95, (before, after)
    assert not head.training


def test_part_head_file_round_trip_and_refusals(tmp_path):
    field = torch.nn.Linear(3, 4)
    head = PartHead(("seat", "back"), shape_dim=4, frequencies=2, width=16)
    path = save_part_head(tmp_path / "parts.safetensors", head, model_fingerprint(field), {"objects": 3})
    loaded = load_part_head(path, model_fingerprint(field))
    points, z_s = torch.rand(10, 3), torch.randn(1, 4)
    assert loaded.parts == ("seat", "back") and torch.equal(loaded(points, z_s), head(points, z_s))
    with torch.no_grad():
        field.weight[0, 0] += 1.0
    with pytest.raises(UserError, match="made for another trained field"):
        load_part_head(path, model_fingerprint(field))
    (tmp_path / "junk.safetensors").write_text("junk")
    with pytest.raises(UserError, match="not a part head file"):
        load_part_head(tmp_path / "junk.safetensors", model_fingerprint(field))
