"""Prompt libraries (`configs/prompts/<category>.yaml`): what the mappers are trained to follow.

A library names the category's neutral prompt (the source of directional losses) and two lists
of prompts: shape edits for the shape mapper, appearance edits for the appearance mapper.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from clipnerf_ns.errors import UserError

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "configs" / "prompts"


@dataclass(frozen=True)
class PromptLibrary:
    neutral: str
    shape: tuple[str, ...]
    appearance: tuple[str, ...]

    def for_target(self, target: str) -> tuple[str, ...]:
        return self.shape if target == "shape" else self.appearance


def load_prompt_library(path: Optional[Path], category: str) -> PromptLibrary:
    """The library at `path`, or the project's library for `category` when `path` is None."""
    path = Path(path) if path is not None else PROMPTS_DIR / f"{category}.yaml"
    if not path.is_file():
        raise UserError(f"{path}: no prompt library for category {category!r} (pass one with --pipeline.model.prompts FILE)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("neutral"), str):
        raise UserError(f"{path}: a prompt library needs 'neutral' (a prompt) and lists 'shape' and 'appearance'")
    lists = {}
    for key in ("shape", "appearance"):
        items = raw.get(key)
        if not isinstance(items, list) or not items or not all(isinstance(p, str) and p.strip() for p in items):
            raise UserError(f"{path}: '{key}' must be a non-empty list of prompts")
        lists[key] = tuple(items)
    return PromptLibrary(raw["neutral"], lists["shape"], lists["appearance"])
