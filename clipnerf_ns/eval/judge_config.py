"""Settings of the attribute judge and its training (`clipnerf train-judge`). Standard library
only, so the command line can describe them without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

from clipnerf_ns.clip.domain_config import Augment
from clipnerf_ns.validation import Bounds


@dataclass(kw_only=True)
class JudgeTraining:
    """Train the attribute judge: a small ConvNet that answers visual questions about a render
    (back style, armrests, leg count, part colours...), supervised by the procedural objects'
    true attributes. It is no CLIP, so it can judge edits made with one."""

    out: Path
    """The .safetensors file to write (atomically), self-describing: architecture, questions and
    these settings in its metadata."""
    seed: int = 2
    """Seed of everything: objects, cameras, initialisation, batches. The shipped CLIPs use seeds 0
    and 1, the benches 1000: the judge's objects are none of theirs."""
    categories: tuple[Literal["chairs", "cars"], ...] = ("chairs", "cars")
    """Procedural categories to learn (one set of answer heads each)."""
    num_objects: Annotated[int, Bounds(2, 100_000)] = 5000
    """Objects per category (held-out ones included)."""
    heldout_objects: int = 300
    """Objects per category held out for the accuracy figures, never trained on."""
    views: Annotated[int, Bounds(1, 256)] = 6
    """Rendered views per object, from random cameras on the upper hemisphere."""
    front_views: Annotated[int, Bounds(0, 256)] = 4
    """More views per object from the "front" band (azimuth within 70 degrees of the front,
    elevation 10 to 40: `domain_data.VIEW_BANDS`), where the benches show the judge its renders and
    `clipnerf eval` judges edits from (azimuth 40, elevation 25), and where a recline or a wing is
    foreshortened: the views it is used on get as many examples as those all around. 0: none."""
    image_size: int = 128
    """Input size in pixels (square): renders are resized to it. Views are framed as `framing`
    says (`render.framing_intrinsics`)."""
    framing: Literal["object", "category"] = "category"
    """How the views are framed: on the object itself (it fills the frame: thin parts get the most
    pixels, but sizes are lost), or on a box of the category's largest size centred on the object
    (`synth.FRAME_EXTENTS`: sizes are kept, so "tall", "wide" and "long" can be seen; the shipped
    `compact` CLIP and the judge are trained so)."""
    stem_stride: int = 2
    """Stride of the first convolution (2 halves the cost of a larger input; its 3 x 3 kernels
    still see every pixel)."""
    widths: tuple[int, ...] = (16, 32, 64, 128)
    """Channels of the conv stages (each later stage works at half the resolution of the one before)."""
    steps: Annotated[int, Bounds(0, 1_000_000)] = 6000
    """Optimisation steps."""
    batch_size: Annotated[int, Bounds(2, 65_536)] = 128
    """Renders per step."""
    lr: Annotated[float, Bounds(1e-9, 10)] = 3e-3
    """Peak learning rate (AdamW, linear warm-up then cosine decay)."""
    weight_decay: float = 5e-4
    """AdamW weight decay on the conv and linear weights."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    augment: Augment = field(default_factory=Augment)
    """Augmentation towards what NeRF renders look like (as for the compact CLIP)."""
    init: Optional[Path] = None
    """Start from the weights of this judge file instead of fresh ones (same widths, stem stride,
    input size and categories): to train a shipped judge further. The new file records the
    start's fingerprint and its own training record, so each stage can be replayed."""
    cache: Optional[Path] = None
    """Optional .npz cache of the rendered dataset: reused when its settings match, else written
    (the front views go to a second file beside it, NAME-front.npz)."""
    overwrite: bool = False
    """Replace the output file if it exists."""
