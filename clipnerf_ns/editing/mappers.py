"""The code mappers (paper section 3.2): CLIP embedding -> change of the shape or appearance code.

An edit is one forward pass: `z_s' = z_s + s * M_s(e)`, `z_a' = z_a + s * M_a(e)`, where `e` is
the CLIP embedding of a prompt or an exemplar image and `s` the user's strength.
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor, nn


class CodeMapper(nn.Module):
    """Two-layer MLP from a CLIP embedding to a code offset. Its output layer starts at zero, so an
    untrained mapper is the identity edit."""

    def __init__(self, clip_dim: int, code_dim: int, hidden: int = 256):
        super().__init__()
        self.hidden = nn.Linear(clip_dim, hidden)
        self.out = nn.Linear(hidden, code_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, embedding: Float[Tensor, "*batch d_clip"]) -> Float[Tensor, "*batch d_code"]:
        return self.out(nn.functional.relu(self.hidden(embedding)))


class Mappers(nn.Module):
    """The shape mapper and the appearance mapper, trained separately."""

    def __init__(self, clip_dim: int, shape_dim: int, appearance_dim: int, hidden: int = 256):
        super().__init__()
        self.shape = CodeMapper(clip_dim, shape_dim, hidden)
        self.appearance = CodeMapper(clip_dim, appearance_dim, hidden)

    def by_target(self, target: str) -> CodeMapper:
        return self.shape if target == "shape" else self.appearance
