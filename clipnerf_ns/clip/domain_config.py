"""Settings of the compact CLIP and its training (`clipnerf train-clip`). Standard library only,
so the command line can describe them without importing torch or open_clip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

from clipnerf_ns.validation import Bounds


@dataclass(frozen=True)
class ClipArchitecture:
    """Sizes of the compact CLIP: an open_clip `CLIP` with a small vision tower (open_clip's ViT or
    its ModifiedResNet) and a small text transformer.

    The token embedding is vocabulary (49408) x text width, so the text width dominates the file
    size (fp16 on disk): keep it small."""

    embed_dim: int = 128
    """Width of the joint image-text embedding (d_clip)."""
    image_size: int = 64
    """Input image size in pixels (square; a multiple of 32 for the ResNet tower)."""
    vision_tower: Literal["vit", "resnet"] = "resnet"
    """open_clip's ViT, or its ModifiedResNet (a ConvNet: suits small data and thin parts)."""
    patch_size: int = 16
    """ViT patch size in pixels."""
    vision_width: int = 16
    """ViT width, or the ResNet's base width (its stages have 4, 8, 16, 32 times this many channels)."""
    vision_layers: int = 1
    """ViT depth, or the number of residual blocks in each of the ResNet's four stages."""
    vision_head_width: int = 64
    """Attention head width of the ViT or of the ResNet's attention pooling (heads = width / head width)."""
    text_width: int = 64
    """Text transformer width (the token embedding has 49408 rows of this width)."""
    text_layers: int = 3
    """Text transformer depth."""
    text_heads: int = 2
    """Text transformer attention heads."""
    context_length: int = 40
    """Text context length in tokens (longer prompts are truncated, with a warning)."""

    def open_clip_config(self) -> dict:
        """The architecture as open_clip's CLIP(embed_dim, vision_cfg, text_cfg) keyword arguments."""
        if self.vision_tower == "resnet":  # open_clip builds a ModifiedResNet when layers is a list
            vision = {"image_size": self.image_size, "width": self.vision_width,
                      "layers": [self.vision_layers] * 4, "head_width": self.vision_head_width}
        else:
            vision = {"image_size": self.image_size, "patch_size": self.patch_size, "width": self.vision_width,
                      "layers": self.vision_layers, "head_width": self.vision_head_width}
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": vision,
            "text_cfg": {
                "context_length": self.context_length, "vocab_size": 49408, "width": self.text_width,
                "heads": self.text_heads, "layers": self.text_layers,
            },
        }


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation towards what NeRF renders look like."""

    white_background: float = 0.7
    """Probability of compositing over white (the renders' usual background); else a random flat
    colour or a vertical gradient."""
    blur: float = 0.5
    """Probability of a down-then-up resampling (factor 0.4 to 0.9): the softness of NeRF renders."""
    max_shift: int = 4
    """Largest random translation in pixels (each axis)."""
    noise: float = 0.02
    """Largest standard deviation of added Gaussian pixel noise."""
    brightness: float = 0.08
    """Largest relative brightness change (colours keep their hue)."""


@dataclass(kw_only=True)
class DomainTraining:
    """Train a compact CLIP contrastively on renders and captions of procedural objects."""

    out: Path
    """The .safetensors file to write (atomically), self-describing: architecture, preprocessing
    and these settings in its metadata."""
    templates: Literal["default", "alt"] = "default"
    """Caption template set (synth.make_captions): "default" for the editing model, "alt" for the evaluator."""
    seed: int = 0
    """Seed of everything: objects, cameras, captions, initialisation, batches. Another seed gives
    other objects (the evaluator uses seed 1)."""
    categories: tuple[Literal["chairs", "cars"], ...] = ("chairs", "cars")
    """Procedural categories to train on."""
    num_objects: Annotated[int, Bounds(2, 100_000)] = 1000
    """Objects per category (held-out ones included)."""
    heldout_objects: int = 100
    """Objects per category held out for the retrieval figures, never trained on."""
    views: Annotated[int, Bounds(1, 256)] = 8
    """Rendered views per object, from random cameras on the upper hemisphere."""
    front_views: Annotated[int, Bounds(0, 256)] = 0
    """More views per object from the "front" band (azimuth within 70 degrees of the front,
    elevation 10 to 40: `domain_data.VIEW_BANDS`), where the benches ask the binary tests and
    `clipnerf eval` judges edits, and where a back's recline is foreshortened: all around, only 1
    view in 5 falls there. 0: none (the recorded recipes before stage 8)."""
    captions: Annotated[int, Bounds(1, 256)] = 8
    """Captions per object."""
    framing: Literal["object", "category"] = "category"
    """How the views are framed: on the object itself (it fills the frame: thin parts get the most
    pixels, but sizes are lost), or on a box of the category's largest size centred on the object
    (`synth.FRAME_EXTENTS`: sizes are kept, so "tall", "wide" and "long" can be seen; the shipped
    `compact` and `compact-eval` CLIPs and the judge are trained so)."""
    steps: Annotated[int, Bounds(0, 1_000_000)] = 3500
    """Optimisation steps."""
    batch_size: Annotated[int, Bounds(2, 65_536)] = 128
    """Image-caption pairs per step (distinct objects within a batch)."""
    focused_captions: Annotated[float, Bounds(0, 1)] = 0.6
    """Share of each batch whose caption is built around one attribute question
    (`data.attribute_captions`) instead of a general caption."""
    hard_negatives: bool = True
    """Give each focused caption's image its hard negative too: the same caption with that one
    attribute changed (NegCLIP), so matching must look at the attribute itself."""
    answer_weight: Annotated[float, Bounds(0, 1e6)] = 1.0
    """Weight of a loss that asks each image one of its attribute questions in short captions, one
    per answer ("a chair with a slatted back" / "a chair with a solid back" / "a stool"; the twelve
    "a <colour> seat" of a colour question; in the template set's words and synonyms), and rewards
    choosing the true one: the zero-shot choice that mapper training, `clipnerf eval` and the
    benches make. 0 turns it off."""
    answer_questions: Annotated[int, Bounds(1, 64)] = 1
    """Questions the answer loss asks of each image per step (distinct, drawn among those that apply):
    more gives every question its gradient at each step, at little cost (the answer captions are
    short and recur within a batch)."""
    answer_balance: bool = False
    """Train the answer loss for balanced accuracy (logit adjustment: each answer's logit gets the
    log of its share among the training objects, in training only), so the zero-shot choice does
    not lean towards common answers (1 chair in 6 has three legs). Off in the recorded recipes
    before stage 6."""
    cross_answer_weight: Annotated[float, Bounds(0, 1e6)] = 0.0
    """Weight of a loss that asks each image, for each question the answer loss asks, to prefer its
    true answer caption over the false answers of the image's other asked questions ("a chair with
    four legs" over "a chair with a wide seat" for a narrow four-legged chair): the choice among
    prompts of different questions that `clipnerf eval`'s five-way test makes, which the answer
    loss, one question at a time, never asks. Needs --answer-weight above 0 and --answer-questions
    2 or more. 0: off (the recorded recipes before stage 10)."""
    focus_questions: tuple[str, ...] = ()
    """Attribute questions ("back_tilt", "seat_width"...) whose answer and attribute losses count
    --focus-weight times as much as the others': the ones the bench measures short. Empty: none."""
    focus_weight: Annotated[float, Bounds(1, 1e3)] = 1.0
    """Weight of the --focus-questions' terms in the answer and attribute losses (the others: 1)."""
    attribute_weight: Annotated[float, Bounds(0, 1e6)] = 1.0
    """Weight of an auxiliary loss that predicts every attribute question's answer from the image
    embedding (linear heads, used in training only and not saved)."""
    lr: Annotated[float, Bounds(1e-9, 10)] = 1e-3
    """Peak learning rate (AdamW, linear warm-up then cosine decay)."""
    weight_decay: float = 0.1
    """AdamW weight decay (not applied to gains, biases, embeddings or the logit scale)."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    arch: ClipArchitecture = field(default_factory=ClipArchitecture)
    """Model sizes."""
    augment: Augment = field(default_factory=Augment)
    """Augmentation."""
    init: Optional[Path] = None
    """Start from this compact CLIP file (one that `clipnerf train-clip` wrote) instead of random
    weights, to train it further, e.g. at a larger --arch.image-size: its architecture must equal
    --arch but for the image size (the vision tower's positional grid is then resized). Its
    fingerprint and its own training record go into the new file's metadata. None: random weights."""
    cache: Optional[Path] = None
    """Optional .npz cache of the rendered dataset: reused when its settings match, else written.
    The result is the same with or without it."""
    overwrite: bool = False
    """Replace the output file if it exists."""
