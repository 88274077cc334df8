"""The disentangled conditional radiance field of CLIP-NeRF (Wang et al. 2022, section 3.1).

    shape:       gamma(x) --+--> deformation T(gamma(x), z_s) --> delta (one per encoding channel)
                            +--> gamma(x) + tanh(delta) --> density trunk --> sigma, feature
    appearance:  [feature, gamma(d), z_a] --> colour head --> rgb

`z_a` enters only after sigma is computed, so no appearance code can change the geometry: the
density path never sees it (tested to the bit). Positions are given in the scene box's
normalised coordinates, [-1, 1]^3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from clipnerf_ns.errors import UserError

try:  # optional GPU accelerator; the pure-torch path below is always available
    import tinycudann as tcnn
except (ImportError, OSError, EnvironmentError):  # pragma: no cover - not installable on the CPU machines
    tcnn = None


@dataclass
class FieldSizes:
    """Architecture sizes of the conditional field (the presets live in `clipnerf_ns.app.methods`)."""

    position_frequencies: int = 10
    """L for the position encoding: 3 x 2L sin/cos channels."""
    direction_frequencies: int = 4
    """L for the view-direction encoding."""
    shape_dim: int = 128
    """Size of the shape code z_s."""
    appearance_dim: int = 128
    """Size of the appearance code z_a."""
    deform_layers: int = 4
    """Hidden layers of the deformation network T(x, z_s)."""
    deform_width: int = 256
    """Width of the deformation network."""
    trunk_layers: int = 8
    """Hidden layers of the density trunk."""
    trunk_width: int = 256
    """Width of the density trunk."""
    color_layers: int = 1
    """Hidden layers of the colour head."""
    color_width: int = 128
    """Width of the colour head."""
    backend: Literal["auto", "torch", "tcnn"] = "auto"
    """MLP implementation: tinycudann's fused MLPs when importable and on CUDA ('auto'), or plain torch."""

    def problems(self) -> list[str]:
        """What is impossible about these sizes (empty when they are usable)."""
        counts = [f for f in self.__dataclass_fields__ if f != "backend"]
        found = [f"{name} must be at least 1, got {getattr(self, name)}" for name in counts if getattr(self, name) < 1]
        if self.position_frequencies > 20 or self.direction_frequencies > 20:
            found.append("encodings above 20 frequencies overflow float32 (2^20 pi)")
        if self.backend == "tcnn" and tcnn is None:
            found.append("backend 'tcnn' asked for, but tinycudann is not importable")
        return found


def positional_encoding(x: Float[Tensor, "*batch c"], num_frequencies: int) -> Float[Tensor, "*batch e"]:
    """gamma(x): sin and cos of 2^k pi x for k < L, grouped [sin(all k, all c), cos(all k, all c)]."""
    scales = (2.0 ** torch.arange(num_frequencies, device=x.device, dtype=x.dtype)) * math.pi
    angles = (x[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def encoding_size(channels: int, num_frequencies: int) -> int:
    return 2 * channels * num_frequencies


def deformed_encoding(
    encoding: Float[Tensor, "*batch e"], offset: Float[Tensor, "*batch e"]
) -> Float[Tensor, "*batch e"]:
    """The shape-conditioned encoding gamma(x) + tanh(delta); delta = 0 leaves gamma(x) unchanged."""
    return encoding + torch.tanh(offset)


def _torch_mlp(d_in: int, d_out: int, width: int, hidden_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(hidden_layers):
        layers += [nn.Linear(d, width), nn.ReLU(inplace=True)]
        d = width
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


class _TcnnMLP(nn.Module):  # pragma: no cover - needs CUDA and tinycudann
    """tinycudann MLP with a float32 output (fully fused when the width allows it)."""

    def __init__(self, d_in: int, d_out: int, width: int, hidden_layers: int):
        super().__init__()
        self.d_out = d_out
        fused = width in (16, 32, 64, 128)
        self.net = tcnn.Network(
            n_input_dims=d_in,
            n_output_dims=d_out,
            network_config={
                "otype": "FullyFusedMLP" if fused else "CutlassMLP",
                "activation": "ReLU",
                "output_activation": "None",
                "n_neurons": width,
                "n_hidden_layers": hidden_layers,
            },
        )

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape[:-1]
        return self.net(x.reshape(-1, x.shape[-1])).float().reshape(*shape, self.d_out)


def mlp_on_parts(mlp: nn.Module, parts: list[Tensor]) -> Tensor:
    """mlp(cat(parts)) without building the concatenation in the torch path: the first layer's
    weight is split by part, so a code shared by every point (leading size 1) is projected once."""
    if not isinstance(mlp, nn.Sequential):  # tinycudann: one fused network on the concatenation
        batch = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
        return mlp(torch.cat([p.expand(*batch, p.shape[-1]) for p in parts], dim=-1))
    first, start = mlp[0], 0
    hidden = None
    for part in parts:
        weight = first.weight[:, start : start + part.shape[-1]]
        start += part.shape[-1]
        if hidden is None:
            hidden = F.linear(part, weight, first.bias)
        elif part.dim() == 2 and part.shape == hidden.shape[:1] + part.shape[1:]:
            hidden = torch.addmm(hidden, part, weight.t())  # fused multiply-accumulate
        else:
            hidden = hidden + F.linear(part, weight)  # a shared code: broadcast
    return mlp[1:](hidden)


def use_tcnn(backend: str, device: Optional[torch.device] = None) -> bool:
    if backend == "torch":
        return False
    if backend == "tcnn":
        return True
    return tcnn is not None and torch.cuda.is_available() and (device is None or device.type == "cuda")


def make_mlp(d_in: int, d_out: int, width: int, hidden_layers: int, tcnn_backend: bool) -> nn.Module:
    if tcnn_backend:  # pragma: no cover
        return _TcnnMLP(d_in, d_out, width, hidden_layers)
    return _torch_mlp(d_in, d_out, width, hidden_layers)


class ConditionalField(nn.Module):
    """sigma(x, z_s) and rgb(x, d, z_s, z_a) for a whole category.

    Codes are per point (`*batch d`) or shared by all points (leading size 1).
    """

    def __init__(self, sizes: FieldSizes):
        super().__init__()
        problems = sizes.problems()
        if problems:
            raise UserError("impossible field sizes: " + "; ".join(problems))
        self.sizes = sizes
        fast = use_tcnn(sizes.backend)
        e_pos = encoding_size(3, sizes.position_frequencies)
        e_dir = encoding_size(3, sizes.direction_frequencies)
        self.deformation = make_mlp(e_pos + sizes.shape_dim, e_pos, sizes.deform_width, sizes.deform_layers, fast)
        self.trunk = make_mlp(e_pos, 1 + sizes.trunk_width, sizes.trunk_width, sizes.trunk_layers, fast)
        self.color_head = make_mlp(
            sizes.trunk_width + e_dir + sizes.appearance_dim, 3, sizes.color_width, sizes.color_layers, fast
        )
        if not fast:
            # Start with no deformation: T's last layer at zero, so gamma(x) passes through unchanged.
            last = self.deformation[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def shape_offset(
        self, encoding: Float[Tensor, "*batch e"], z_s: Float[Tensor, "*batch d_shape"]
    ) -> Float[Tensor, "*batch e"]:
        """delta = T(gamma(x), z_s), one offset per position-encoding channel."""
        return mlp_on_parts(self.deformation, [encoding, z_s])

    def density(
        self, positions: Float[Tensor, "*batch 3"], z_s: Float[Tensor, "*batch d_shape"]
    ) -> tuple[Float[Tensor, "*batch 1"], Float[Tensor, "*batch w"]]:
        """Density (non-negative) and the trunk's feature; depends on x and z_s only."""
        encoding = positional_encoding(positions, self.sizes.position_frequencies)
        trunk_out = self.trunk(deformed_encoding(encoding, self.shape_offset(encoding, z_s)))
        # exp activation (clamped) reaches the large densities of opaque surfaces quickly.
        sigma = torch.exp(torch.clamp(trunk_out[..., :1] - 1.0, max=15.0))
        return sigma, trunk_out[..., 1:]

    def color(
        self,
        feature: Float[Tensor, "*batch w"],
        directions: Float[Tensor, "*batch 3"],
        z_a: Float[Tensor, "*batch d_app"],
    ) -> Float[Tensor, "*batch 3"]:
        """Colour from the trunk feature, the view direction and the appearance code."""
        d_enc = positional_encoding(directions, self.sizes.direction_frequencies)
        return torch.sigmoid(mlp_on_parts(self.color_head, [feature, d_enc, z_a]))

    def forward(
        self,
        positions: Float[Tensor, "*batch 3"],
        directions: Float[Tensor, "*batch 3"],
        z_s: Float[Tensor, "*batch d_shape"],
        z_a: Float[Tensor, "*batch d_app"],
    ) -> tuple[Float[Tensor, "*batch 1"], Float[Tensor, "*batch 3"]]:
        sigma, feature = self.density(positions, z_s)
        return sigma, self.color(feature, directions, z_a)
