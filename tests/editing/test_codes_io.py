import pytest
import torch

from clipnerf_ns.codes import Codes, load_codes, model_fingerprint, read_codes_file, save_codes
from clipnerf_ns.errors import UserError


def test_codes_round_trip_and_refusals(tmp_path):
    field = torch.nn.Linear(3, 4)
    fingerprint = model_fingerprint(field)
    assert fingerprint == model_fingerprint(field) and len(fingerprint) == 16
    codes = Codes(torch.randn(6), torch.randn(5))
    path = save_codes(tmp_path / "c.safetensors", codes, fingerprint, {"object": "x"}, {"pose": torch.eye(4)})
    loaded, info = load_codes(path, fingerprint, 6, 5)
    assert torch.equal(loaded.z_s, codes.z_s) and torch.equal(loaded.z_a, codes.z_a) and info == {"object": "x"}
    assert torch.equal(read_codes_file(path)[0]["pose"], torch.eye(4))
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no partial file left
    with torch.no_grad():
        field.weight[0, 0] += 1.0
    with pytest.raises(UserError, match="made for another trained model"):
        load_codes(path, model_fingerprint(field), 6, 5)
    with pytest.raises(UserError, match="size 6\\+5"):
        load_codes(path, fingerprint, 8, 5)
    (tmp_path / "junk.safetensors").write_text("junk")
    with pytest.raises(UserError, match="not a codes file"):
        load_codes(tmp_path / "junk.safetensors", fingerprint, 6, 5)
    with pytest.raises(UserError, match="no such codes file"):
        load_codes(tmp_path / "missing.safetensors", fingerprint, 6, 5)


def test_a_part_edit_travels_in_codes_files_and_interpolates(tmp_path):
    fingerprint = model_fingerprint(torch.nn.Linear(3, 4))
    parts = torch.zeros(4, 5)
    parts[2] = torch.randn(5)
    codes = Codes(torch.randn(6), torch.randn(5), parts)
    loaded, _ = load_codes(save_codes(tmp_path / "c.safetensors", codes, fingerprint), fingerprint, 6, 5)
    assert torch.equal(loaded.part_changes, parts)
    plain, _ = load_codes(save_codes(tmp_path / "p.safetensors", Codes(codes.z_s, codes.z_a), fingerprint), fingerprint, 6, 5)
    assert plain.part_changes is None
    assert torch.allclose(plain.lerp(codes, 0.25).part_changes, 0.25 * parts)  # no part edit is a zero one
    assert plain.lerp(plain, 0.5).part_changes is None
    assert codes.shared().part_changes.shape == (1, 4, 5) and codes.shared().z_a.shape == (1, 5)
    odd = save_codes(tmp_path / "odd.safetensors", Codes(codes.z_s, codes.z_a), fingerprint, extra={"part_changes": torch.zeros(4, 3)})
    with pytest.raises(UserError, match=r"part_changes of shape \(4, 3\) do not fit this model \(parts x 5\)"):
        load_codes(odd, fingerprint, 6, 5)
