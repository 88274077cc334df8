"""Which semantic part (seat, back, base, arms) a point of an object belongs to, so that a colour
prompt that names a part ("a chair with a red seat") recolours that part alone.

Why at render time: the appearance code is one vector for the whole object, and the field learnt
seat and back colours together (most training chairs share them), so no appearance code makes the
seat red and keeps the back. Measured on the shipped chairs model, fitting the appearance code to
such a target reaches at best 0.55 of parts recoloured with 0.67 of the others kept. A part edit is
therefore a change of the appearance code per part, and each point takes the changes weighted by
its part probabilities: p(part | x, z_s) from a small MLP trained, with the field frozen, on surface
points of the training objects labelled by their meshes (`clipnerf train-parts`). Its file lives
beside the run's config.yml (`PART_HEAD_FILE`), tied to the field by its fingerprint, so a run's
checkpoints are unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from jaxtyping import Float, Int
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from clipnerf_ns.atomic import save_safetensors
from clipnerf_ns.errors import UserError
from clipnerf_ns.fields.conditional_field import encoding_size, positional_encoding
from clipnerf_ns.models.part_head_config import PART_HEAD_FILE

FORMAT = "clipnerf-part-head/1"


class PartHead(nn.Module):
    """Part logits of points (the field's [-1, 1]^3 box coordinates) of the object of shape code z_s."""

    def __init__(self, parts: tuple[str, ...], shape_dim: int, frequencies: int = 4, width: int = 64):
        super().__init__()
        self.parts, self.shape_dim, self.frequencies, self.width = tuple(parts), shape_dim, frequencies, width
        self.mlp = nn.Sequential(
            nn.Linear(encoding_size(3, frequencies) + shape_dim, width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU(), nn.Linear(width, len(parts)))

    def forward(self, points: Float[Tensor, "n 3"], z_s: Float[Tensor, "n|1 d_shape"]) -> Float[Tensor, "n parts"]:
        return self.mlp(torch.cat([positional_encoding(points, self.frequencies), z_s.expand(len(points), -1)], -1))


def part_appearance(
    head: Optional[PartHead], points: Float[Tensor, "n 3"], z_s: Float[Tensor, "n|1 d_shape"],
    z_a: Float[Tensor, "n|1 d_app"], part_changes: Float[Tensor, "n|1 parts d_app"],
) -> Float[Tensor, "n d_app"]:
    """Each point's appearance code: z_a plus the change of each part weighted by p(part | x, z_s)."""
    if head is None:
        raise UserError("these codes hold a part edit and this run has no part head "
                        f"({PART_HEAD_FILE} beside its config.yml): make one with clipnerf train-parts")
    if part_changes.shape[-2] != len(head.parts):
        raise UserError(f"these codes change {part_changes.shape[-2]} parts; this run's part head knows {len(head.parts)}")
    weights = torch.softmax(head(points, z_s), dim=-1)
    return z_a + torch.einsum("np,npd->nd", weights, part_changes.expand(len(points), -1, -1))


def train_part_head(
    head: PartHead, points: Float[Tensor, "n 3"], z_s: Float[Tensor, "n d_shape"], labels: Int[Tensor, " n"],
    steps: int, batch: int = 4096, lr: float = 3e-3, generator: Optional[torch.Generator] = None, progress=None,
) -> PartHead:
    """Cross-entropy on labelled points (Adam, cosine-decayed learning rate)."""
    optimizer = torch.optim.Adam(head.parameters(), lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    head.train()
    for _ in progress(range(steps)) if progress else range(steps):
        pick = torch.randint(len(points), (batch,), generator=generator).to(points.device)
        loss = nn.functional.cross_entropy(head(points[pick], z_s[pick]), labels[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return head.eval()


@torch.no_grad()
def part_accuracy(head: PartHead, points: Tensor, z_s: Tensor, labels: Tensor) -> dict[str, float]:
    """Share of points given their labelled part, over all points and per part."""
    guess = head(points, z_s).argmax(-1)
    out = {"all": float((guess == labels).float().mean())}
    for k, name in enumerate(head.parts):
        if (labels == k).any():
            out[name] = float((guess[labels == k] == k).float().mean())
    return out


def save_part_head(path: Path, head: PartHead, fingerprint: str, info: dict) -> Path:
    metadata = {"format": FORMAT, "model": fingerprint, "parts": json.dumps(list(head.parts)),
                "sizes": json.dumps({"shape_dim": head.shape_dim, "frequencies": head.frequencies, "width": head.width}),
                "info": json.dumps(info)}
    return save_safetensors({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, metadata, Path(path))


def load_part_head(path: Path, fingerprint: str) -> PartHead:
    """The part head of a file made for the field with this fingerprint (one-line errors otherwise)."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            metadata = dict(handle.metadata() or {})
        sizes, parts = json.loads(metadata["sizes"]), tuple(json.loads(metadata["parts"]))
    except (SafetensorError, OSError, ValueError, KeyError) as err:
        raise UserError(f"{path}: not a part head file ({err})") from None
    if metadata.get("format") != FORMAT:
        raise UserError(f"{path}: not a clipnerf part head file (written by clipnerf train-parts)")
    if metadata.get("model") != fingerprint:
        raise UserError(f"{path}: this part head was made for another trained field (fingerprint {metadata.get('model')}, "
                        f"this run's is {fingerprint}); train one for it with clipnerf train-parts")
    head = PartHead(parts, sizes["shape_dim"], sizes["frequencies"], sizes["width"])
    try:
        head.load_state_dict(tensors)
    except RuntimeError as err:
        raise UserError(f"{path}: its weights do not fit its sizes ({str(err).splitlines()[0]})") from None
    return head.eval()
