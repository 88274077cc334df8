"""One check of the numbers a user gives, for every command and viewer input.

Options declare their range in their type, `Annotated[int, Bounds(8, MAX_RESOLUTION)]` (tyro
ignores the marker), and `check_numbers(command)` walks the command's dataclass, nested configs
included: every float must be finite, and every bounded number in its range. The upper bounds keep
a run's memory well under the machine's (an image side of MAX_RESOLUTION is 4 M rays).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Optional

from clipnerf_ns.errors import UserError

MAX_RESOLUTION = 2048
"""Largest image side any command renders (4 M rays, chunked; the images themselves are 50 MB)."""
MAX_COUNT = 10_000
"""Largest count of frames, steps or repeats a command accepts."""
STRENGTH_BOUNDS = (-10.0, 10.0)
"""Edit strengths: beyond ten times a mapper's change, codes leave everything the field was trained on."""


@dataclass(frozen=True)
class Bounds:
    """The closed range [lo, hi] an option's value must lie in."""

    lo: float
    hi: float


def check_number(name: str, value: float, bounds: Optional[Bounds] = None) -> float:
    """`value` if it is a finite number (in `bounds` when given); else a one-line error naming it."""
    flag = name
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{flag} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise UserError(f"{flag} must be a finite number, got {value}")
    if bounds is not None and not bounds.lo <= value <= bounds.hi:
        raise UserError(f"{flag} must be between {bounds.lo:g} and {bounds.hi:g}, got {value:g}")
    return value


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _bounds_of(hint: Any) -> Optional[Bounds]:
    for extra in getattr(hint, "__metadata__", ()):
        if isinstance(extra, Bounds):
            return extra
    return None


def check_numbers(config: Any) -> None:
    """Check every number field of a dataclass instance, recursively (see the module docstring)."""
    hints = typing.get_type_hints(type(config), include_extras=True)
    for field in dataclasses.fields(config):
        value = getattr(config, field.name, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_numbers(value)
        elif isinstance(value, (tuple, list)):
            for item in value:
                if isinstance(item, float):
                    check_number(_flag(field.name), item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            bounds = _bounds_of(hints.get(field.name))
            if isinstance(value, float) or bounds is not None:
                check_number(_flag(field.name), value, bounds)
