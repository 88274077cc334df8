"""The code mappers (paper section 3.2): CLIP embedding -> change of the shape or appearance code.

An edit is one forward pass: `z_s' = z_s + s * M_s(e)`, `z_a' = z_a + s * M_a(e)`, where `e` is
the CLIP embedding of a prompt or an exemplar image and `s` the user's strength.

Two options keep shape edits where the shape space decodes to solid objects (the space is clean
near the prior's mean and fogs with the distance from it):

- the shape mapper may also see the object's shape code (`M_s(e, z_s)`), so that one prompt can
  move each object its own way, and not at all an object that already has what it asks for;
- edited shape codes further than `max_prior_distance` prior deviations from the prior's mean (or
  than the object itself, if it lies further) are pulled back onto that sphere (`pull_into_prior`).
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from jaxtyping import Float
from torch import Tensor, nn

from clipnerf_ns.codes import Codes


def prior_distance(z: Float[Tensor, "*batch d"], mean: Float[Tensor, " d"], std: Float[Tensor, " d"]) -> Float[Tensor, "*batch"]:
    """Root mean square over the dimensions of a code's offset from the prior's mean, in prior
    deviations (learnt codes and prior draws sit near 1)."""
    return ((z - mean) / std).pow(2).mean(-1).sqrt()


def pull_into_prior(
    z: Float[Tensor, "*batch d"], mean: Float[Tensor, " d"], std: Float[Tensor, " d"], radius: Union[float, Float[Tensor, "*batch"]],
) -> Float[Tensor, "*batch d"]:
    """`z` moved straight towards the prior's mean until it lies at most `radius` prior deviations
    from it (`prior_distance`); codes already that close are unchanged. Differentiable."""
    scale = (radius / prior_distance(z, mean, std).clamp_min(1e-12)).clamp(max=1.0)
    return mean + (z - mean) * scale[..., None]


class CodeMapper(nn.Module):
    """Two-layer MLP from a CLIP embedding (and optionally a code) to a code offset. Its output
    layer starts at zero, so an untrained mapper is the identity edit."""

    def __init__(self, clip_dim: int, code_dim: int, hidden: int = 256):
        super().__init__()
        self.hidden = nn.Linear(clip_dim, hidden)
        self.out = nn.Linear(hidden, code_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, embedding: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_code"]:
        return self.out(nn.functional.relu(self.hidden(embedding)))


class Mappers(nn.Module):
    """The shape mapper and the appearance mapper, trained separately."""

    def __init__(self, clip_dim: int, shape_dim: int, appearance_dim: int, hidden: int = 256,
                 shape_sees_code: bool = False, max_prior_distance: Optional[float] = None):
        super().__init__()
        self.shape = CodeMapper(clip_dim + (shape_dim if shape_sees_code else 0), shape_dim, hidden)
        self.appearance = CodeMapper(clip_dim, appearance_dim, hidden)
        self.shape_sees_code = shape_sees_code
        self.max_prior_distance = max_prior_distance

    def change(self, target: str, embedding: Float[Tensor, "n d_clip"], codes: Codes, prior: tuple[Codes, Codes]) -> Tensor:
        """The change of `codes` (n objects) that `embedding` asks for, at strength 1. `prior`:
        the NeRF's code prior (mean, std), in whose units the shape mapper sees and bounds codes."""
        if target != "shape":
            return self.appearance(embedding)
        mean, std = prior[0].z_s, prior[1].z_s
        z_s = codes.z_s
        # the code in prior units over sqrt(d): about unit norm, as the CLIP embedding is, so neither input drowns the other
        units = (z_s - mean) / std / z_s.shape[-1] ** 0.5
        inputs = torch.cat([embedding.expand(z_s.shape[0], -1), units], -1) if self.shape_sees_code else embedding
        change = self.shape(inputs)
        if self.max_prior_distance is None:
            return change
        # never further out than the object itself: an unchanged code stays unchanged
        radius = prior_distance(z_s, mean, std).clamp(min=self.max_prior_distance)
        return pull_into_prior(z_s + change, mean, std, radius) - z_s
