"""Reading run checkpoints (nerfstudio's step-NNNNNNNNN.ckpt) safely and with one-line errors.

Every load is `weights_only=True`, whatever torch's default (before torch 2.6, or with
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set, the default unpickles anything, and a pickle can run code).
A checkpoint that does not load (truncated by a kill during a save, or not a checkpoint) is
reported by name; when it is the newest of a run, the newest older one that loads is used instead,
with a note.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Optional

import torch

from clipnerf_ns.errors import UserError


def checkpoint_step(path: Path) -> int:
    """The step in a checkpoint's name (step-000001000.ckpt -> 1000)."""
    return int(Path(path).stem.split("-")[1])


def run_checkpoints(folder: Path) -> list[Path]:
    """The run's step-*.ckpt files, newest (highest step) first."""
    found = [p for p in Path(folder).glob("step-*.ckpt") if p.stem.split("-")[1].isdigit()]
    return sorted(found, key=checkpoint_step, reverse=True)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents, loaded without unpickling code; one line if it does not load."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{path}: refused: this checkpoint holds Python objects, not only weights "
                        "(a checkpoint from elsewhere can run code when unpickled)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        raise UserError(f"{path}: unreadable checkpoint, truncated or not a checkpoint ({reason})") from None
    if not isinstance(state, dict) or "pipeline" not in state or "step" not in state:
        raise UserError(f"{path}: not a nerfstudio checkpoint (no 'pipeline' weights and 'step')")
    return state


def read_newest_checkpoint(folder: Path, step: Optional[int] = None) -> tuple[Path, dict]:
    """The checkpoint of `step`, or else the newest one in `folder` that loads (with a note on
    stderr when newer ones do not)."""
    folder = Path(folder)
    if step is not None:
        path = folder / f"step-{step:09d}.ckpt"
        return path, read_checkpoint(path)
    candidates = run_checkpoints(folder)
    if not candidates:
        raise UserError(f"{folder}: no checkpoint (step-*.ckpt) in this folder")
    failures = []
    for path in candidates:
        try:
            state = read_checkpoint(path)
        except UserError as err:
            failures.append(str(err))
            continue
        if failures:
            print(f"note: {failures[0]}; using {path.name}, the newest checkpoint that loads", file=sys.stderr)
        return path, state
    more = f" (and {len(failures) - 1} older ones)" if len(failures) > 1 else ""
    raise UserError(failures[0] + more)


def with_prefix(state: dict, prefix: str) -> dict:
    """The entries of a state dict whose keys start with `prefix`, with the prefix taken off."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
