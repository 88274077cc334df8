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
