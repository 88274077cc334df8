"""Shape-code dimensions tied to the objects' known attributes, for a stage-1 space whose
attributes vary apart.

A free auto-decoder spreads each attribute over every dimension of the code, so a step that adds
armrests moves the back, the legs and the seat as well (an edit keeps the judge's other shape
answers about as well as a random step of the same length does: README, "Editing"). Procedural
objects come with their attributes, so the first dimensions of each shape code can be held to them
(one dimension per number or yes/no, one per value of a named choice) and the field learns to read
the attribute there; the dimensions after them stay free for whatever the attributes do not say.
Pure functions; the model weighs the term.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from clipnerf_ns.errors import UserError


def _signs(values: list, is_yes) -> list:
    """+1 where `is_yes(value)`, -1 elsewhere, None where the value is unknown."""
    return [None if v is None else (1.0 if is_yes(v) else -1.0) for v in values]


def _column(values: list, name: str) -> list[tuple[str, list]]:
    """One attribute's columns: (label, per-object value or None), standardised or +-1."""
    known = [v for v in values if v is not None]
    if not known:
        raise UserError(f"no object of the collection has the attribute {name!r} that code_attributes names")
    if all(isinstance(v, bool) for v in known):
        return [(name, _signs(values, bool))]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in known):
        mean = sum(known) / len(known)
        std = (sum((v - mean) ** 2 for v in known) / len(known)) ** 0.5 or 1.0
        return [(name, [None if v is None else (v - mean) / std for v in values])]
    choices = sorted({str(v) for v in known})
    named = choices[1:] if len(choices) == 2 else choices  # one dimension for a choice of two
    return [(f"{name}={c}", _signs(values, lambda v, c=c: str(v) == c)) for c in named]


def attribute_code_targets(
    attributes: Sequence[dict], names: Sequence[str]
) -> tuple[Float[Tensor, "objects k"], Float[Tensor, "objects k"], list[str]]:
    """Targets for the first k shape-code dimensions of each object, a mask of the known ones (an
    object without the attribute, such as a real chair without a measured recline, is left free
    there), and each dimension's label ("armrests", "back_style=slatted", "seat_width")."""
    labels: list[str] = []
    columns: list[list] = []
    for name in names:
        for label, column in _column([a.get(name) for a in attributes], name):
            labels.append(label)
            columns.append(column)
    mask = torch.tensor([[0.0 if c[i] is None else 1.0 for c in columns] for i in range(len(attributes))])
    targets = torch.tensor([[0.0 if c[i] is None else float(c[i]) for c in columns] for i in range(len(attributes))])
    return targets.reshape(len(attributes), len(labels)), mask.reshape(len(attributes), len(labels)), labels


def attribute_groups(labels: Sequence[str]) -> list[list[int]]:
    """The dimensions (indices into `labels`) of each attribute tied to the code: one for a number or
    a yes/no ("armrests"), one per value of a named choice ("leg_style=round", "leg_style=swivel", ...)."""
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(label.split("=")[0], []).append(index)
    return list(groups.values())


def attribute_code_loss(
    shape_codes: Float[Tensor, "objects d"], targets: Float[Tensor, "objects k"], mask: Float[Tensor, "objects k"]
) -> Tensor:
    """Squared distance of the tied dimensions to their targets, summed over them, mean over objects."""
    k = targets.shape[1]
    return ((shape_codes[:, :k] - targets).pow(2) * mask).sum(-1).mean()


def tied_code_targets(
    attributes: Sequence[dict], names: Sequence[str], shape_dim: int
) -> tuple[Optional[Tensor], Optional[Tensor], list[str]]:
    """`attribute_code_targets` for a model's config (None, None, [] when no attribute is named),
    with a one-line error when they need more dimensions than the shape code has."""
    if not names:
        return None, None, []
    targets, mask, labels = attribute_code_targets(attributes, names)
    if len(labels) > shape_dim:
        raise UserError(f"code_attributes need {len(labels)} shape-code dimensions ({', '.join(labels)}) "
                        f"but shape_dim is {shape_dim}")
    return targets, mask, labels


@torch.no_grad()
def start_at_targets(shape_codes: Tensor, targets: Optional[Tensor], mask: Optional[Tensor]) -> None:
    """Set the tied dimensions of freshly initialised codes to their targets where known."""
    if targets is not None and mask is not None:
        k = targets.shape[1]
        shape_codes[:, :k] = torch.where(mask > 0, targets, shape_codes[:, :k])
