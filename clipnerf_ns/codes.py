"""Latent codes: `Codes` (one or more objects' shape and appearance codes, and a part edit's
changes), the backgrounds they are rendered over, PSNR, and codes files: one object's codes as
safetensors, tied to the model that can render them.

`clipnerf edit`, `clipnerf invert`, the viewer and ns-render configs all exchange codes through
these two functions. The file records a fingerprint of the field's weights, so codes are never
rendered by a model they were not made for (their meaning is specific to one trained field).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from clipnerf_ns.atomic import save_safetensors
from clipnerf_ns.errors import UserError

BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
FORMAT = "clipnerf-codes/1"


@dataclass(frozen=True)
class Codes:
    """The two latent codes of one or more objects, always kept as two named tensors."""

    z_s: Float[Tensor, "*batch d_shape"]
    z_a: Float[Tensor, "*batch d_app"]
    part_changes: Optional[Float[Tensor, "*batch parts d_app"]] = None
    """A part edit: the change of the appearance code on each semantic part of the run's part head
    (`models.part_head`), which each point takes weighted by its part probabilities; None: no part edit."""

    def to(self, device: Union[torch.device, str]) -> "Codes":
        return Codes(self.z_s.to(device), self.z_a.to(device), _maybe(self.part_changes, lambda p: p.to(device)))

    def detach(self) -> "Codes":
        return Codes(self.z_s.detach(), self.z_a.detach(), _maybe(self.part_changes, Tensor.detach))

    def lerp(self, other: "Codes", weight: float) -> "Codes":
        mine, theirs = self.part_changes, other.part_changes
        parts = None
        if mine is not None or theirs is not None:  # no part edit is a zero one
            parts = torch.lerp(torch.zeros_like(theirs) if mine is None else mine,
                               torch.zeros_like(mine) if theirs is None else theirs, weight)
        return Codes(torch.lerp(self.z_s, other.z_s, weight), torch.lerp(self.z_a, other.z_a, weight), parts)

    def take(self, index: Tensor) -> "Codes":
        """Rows `index` of a batch of codes (each ray's object, say)."""
        return Codes(self.z_s[index], self.z_a[index], _maybe(self.part_changes, lambda p: p[index]))

    def shared(self) -> "Codes":
        """One object's codes with a leading size 1: shared by every ray of a render."""
        return Codes(self.z_s.reshape(1, -1), self.z_a.reshape(1, -1),
                     _maybe(self.part_changes, lambda p: p.reshape(1, *p.shape[-2:])))


def _maybe(value: Optional[Tensor], fn) -> Optional[Tensor]:
    return None if value is None else fn(value)


def prior_codes(mean: Codes, std: Codes, u_s: Float[Tensor, "*batch d_shape"], u_a: Float[Tensor, "*batch d_app"]) -> Codes:
    """Codes from prior units: z = mean + std * u."""
    return Codes(mean.z_s + std.z_s * u_s, mean.z_a + std.z_a * u_a)


def prior_units(mean: Codes, std: Codes, codes: Codes) -> tuple[Tensor, Tensor]:
    """(u_s, u_a), the codes in prior units: u = (z - mean) / std (`prior_codes` undoes it)."""
    return (codes.z_s - mean.z_s) / std.z_s, (codes.z_a - mean.z_a) / std.z_a


def psnr(prediction: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio (dB) for images in [0, 1]."""
    return -10.0 * torch.log10(F.mse_loss(prediction, target).clamp(min=1e-10))


def over_background(image: Float[Tensor, "*batch c"], background: Float[Tensor, "*batch 3"]) -> Tensor:
    """RGBA (straight alpha) over a background colour; RGB images pass through unchanged."""
    if image.shape[-1] == 3:
        return image
    alpha = image[..., 3:4]
    return image[..., :3] * alpha + background * (1.0 - alpha)


def model_fingerprint(field: nn.Module) -> str:
    """A short hash of a field's weights: equal for the same trained field, whichever run loads it."""
    digest = hashlib.sha256()
    for name, tensor in sorted(field.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_codes(path: Path, codes: Codes, fingerprint: str, info: Optional[dict] = None,
               extra: Optional[dict[str, Tensor]] = None) -> Path:
    """Write one object's codes (`z_s` (d_shape,), `z_a` (d_app,)) atomically.

    `info` is any JSON-able description (where the codes come from: object, edit, inversion);
    `extra` holds further tensors (e.g. a recovered camera pose)."""
    path = Path(path)
    tensors = {"z_s": codes.z_s.detach().reshape(-1).cpu().contiguous(), "z_a": codes.z_a.detach().reshape(-1).cpu().contiguous()}
    if codes.part_changes is not None:
        tensors["part_changes"] = codes.part_changes.detach().reshape(-1, codes.z_a.shape[-1]).cpu().contiguous()
    for key, value in (extra or {}).items():
        tensors[key] = value.detach().cpu().contiguous()
    metadata = {"format": FORMAT, "model": fingerprint, "info": json.dumps(info or {})}
    return save_safetensors(tensors, metadata, path)


def read_codes_file(path: Path) -> tuple[dict[str, Tensor], dict]:
    """All tensors and the metadata of a codes file (`info` decoded), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such codes file")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{path}: not a codes file ({err})") from None
    if metadata.get("format") != FORMAT or "z_s" not in tensors or "z_a" not in tensors:
        raise UserError(f"{path}: not a clipnerf codes file (written by clipnerf edit or clipnerf invert)")
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserError(f"{path}: its '{name}' holds non-finite values (NaN or inf); these codes cannot be rendered")
    try:
        metadata["info"] = json.loads(metadata.get("info") or "{}")
    except json.JSONDecodeError:
        raise UserError(f"{path}: its 'info' metadata is not JSON (not written by clipnerf)") from None
    return tensors, metadata


def load_codes(path: Path, fingerprint: str, shape_dim: int, appearance_dim: int) -> tuple[Codes, dict]:
    """The codes of a file made for the model with this fingerprint, and the file's `info`."""
    tensors, metadata = read_codes_file(path)
    z_s, z_a = tensors["z_s"], tensors["z_a"]
    if z_s.numel() != shape_dim or z_a.numel() != appearance_dim:
        raise UserError(
            f"{path}: codes of size {z_s.numel()}+{z_a.numel()} were made for another model "
            f"(this one takes {shape_dim}+{appearance_dim})"
        )
    if metadata.get("model") != fingerprint:
        raise UserError(
            f"{path}: these codes were made for another trained model (fingerprint {metadata.get('model')}, "
            f"this model's is {fingerprint}); codes only mean something to the field they were made with"
        )
    part_changes = tensors.get("part_changes")
    if part_changes is not None and (part_changes.ndim != 2 or part_changes.shape[1] != appearance_dim):
        raise UserError(f"{path}: its part_changes of shape {tuple(part_changes.shape)} do not fit this model (parts x {appearance_dim})")
    return Codes(z_s.float(), z_a.float(), None if part_changes is None else part_changes.float()), metadata["info"]
