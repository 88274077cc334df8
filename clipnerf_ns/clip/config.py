"""Which CLIP to load: options only, so that command lines and method configs can name a CLIP
without importing open_clip (`ClipEncoder.load` in encoder.py reads them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass
class ClipConfig:
    """Which CLIP to load, and from where (nothing is downloaded unless `pretrained` is set)."""

    model: str = "compact"
    """"compact" (the shipped offline CLIP for editing), "compact-eval" (the shipped evaluator,
    trained on other captions and objects), or an open_clip model name such as "ViT-B-32"."""
    pretrained: Optional[str] = None
    """open_clip pretrained tag for a named model (e.g. "openai", "laion2b_s34b_b79k"); downloads
    the weights, so it needs a network connection or a warm open_clip/Hugging Face cache."""
    checkpoint: Optional[Path] = None
    """Local weights file: a file written by `clipnerf train-clip` (for "compact"), or an open_clip
    state dict (.pt, .bin or .safetensors) for a named model. Overrides the shipped file."""
