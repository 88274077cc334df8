"""Where nerfstudio's own commands load and serve our runs, made safe.

nerfstudio offers plugins no hook for these, so three of its functions are wrapped, each acting
only when the pipeline is one of ours (other methods keep nerfstudio's behaviour):

- `eval_setup`'s checkpoint load (ns-render, ns-eval, ns-viewer, ns-export and our commands) and
  the trainer's `--load-dir` / `--load-checkpoint` resume read with `weights_only=True` and fall
  back to an older checkpoint when the newest is truncated (`checkpoints.py`);
- the viewer binds to 127.0.0.1 unless serving other hosts is asked for (`viewer_host`);
- after `eval_setup`'s load, the run's part head (if it has one) is attached to its NeRF.

Installed when one of our pipelines is built, which nerfstudio does before it loads a checkpoint
or starts a viewer.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import sys
from pathlib import Path

from clipnerf_ns.checkpoints import read_checkpoint, read_newest_checkpoint
from clipnerf_ns.errors import UserError

VIEWER_HOST_VARIABLE = "CLIPNERF_VIEWER_HOST"
NERFSTUDIO_DEFAULT_HOST = "0.0.0.0"
LOOPBACK = "127.0.0.1"


def is_ours(pipeline) -> bool:
    return type(pipeline).__module__.startswith("clipnerf_ns.")


def _exit_with(err: UserError):
    # nerfstudio's commands print tracebacks for exceptions; ours print one line and exit 2.
    print(f"clipnerf_ns: error: {err}", file=sys.stderr)
    raise SystemExit(2)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def viewer_host(requested: str) -> str:
    """The address our viewer binds to: $CLIPNERF_VIEWER_HOST if set; else nerfstudio's default
    (all interfaces) becomes loopback, since the editor panel has no login; a specific address
    passed with --viewer.websocket-host is kept. Serving beyond this machine prints a warning."""
    host = os.environ.get(VIEWER_HOST_VARIABLE) or requested
    if not os.environ.get(VIEWER_HOST_VARIABLE) and host == NERFSTUDIO_DEFAULT_HOST:
        print(f"note: the viewer listens on {LOOPBACK} only; to serve other hosts, set "
              f"{VIEWER_HOST_VARIABLE}=0.0.0.0 (anyone who reaches the port can then edit)", file=sys.stderr)
        return LOOPBACK
    if not is_loopback(host):
        print(f"warning: the viewer and its editor panel are open to every host that reaches {host}; "
              "there is no login (see the README's security section)", file=sys.stderr)
    return host


def _safe_eval_load_checkpoint(original, config, pipeline):
    if not is_ours(pipeline):
        return original(config, pipeline)
    try:
        path, state = read_newest_checkpoint(config.load_dir, config.load_step)
    except UserError as err:
        _exit_with(err)
    pipeline.load_pipeline(state["pipeline"], state["step"])
    attach_run_part_head(pipeline, Path(config.load_dir).parent)
    return path, int(state["step"])


def attach_run_part_head(pipeline, run_folder: Path) -> None:
    """Give the run's NeRF the part head beside its stage-1 config.yml, when there is one (part edits
    need it; everything else renders without). A mapper run's NeRF is its stage-1 run's."""
    # deferred: this module is imported before torch is needed (nerfstudio's commands start with it)
    from clipnerf_ns.codes import model_fingerprint
    from clipnerf_ns.models.part_head import load_part_head
    from clipnerf_ns.models.part_head_config import PART_HEAD_FILE

    model = pipeline.model
    nerf, folder = (model.nerf, Path(pipeline.config.stage1).parent) if hasattr(model, "nerf") else (model, run_folder)
    if not (folder / PART_HEAD_FILE).is_file():
        return
    try:
        nerf.attach_part_head(load_part_head(folder / PART_HEAD_FILE, model_fingerprint(nerf.field)))
    except UserError as err:  # a stale or broken head turns part edits off, not the whole run
        print(f"warning: part edits are off: {err}", file=sys.stderr)


def _safe_trainer_load_checkpoint(original, trainer) -> None:
    config = trainer.config
    if not is_ours(trainer.pipeline) or (config.load_dir is None and config.load_checkpoint is None):
        return original(trainer)
    try:
        if config.load_dir is not None:
            path, state = read_newest_checkpoint(config.load_dir, config.load_step)
        else:
            path, state = config.load_checkpoint, read_checkpoint(config.load_checkpoint)
    except UserError as err:
        _exit_with(err)
    # What nerfstudio's Trainer._load_checkpoint does with the state it loads.
    trainer._start_step = state["step"] + 1
    trainer.pipeline.load_pipeline(state["pipeline"], state["step"])
    trainer.optimizers.load_optimizers(state["optimizers"])
    if "schedulers" in state and config.load_scheduler:
        trainer.optimizers.load_schedulers(state["schedulers"])
    trainer.grad_scaler.load_state_dict(state["scalers"])
    print(f"resumed from {path}")


def _viewer_init(original, viewer, config, log_filename, datapath, pipeline, *args, **kwargs):
    if is_ours(pipeline):
        config.websocket_host = viewer_host(config.websocket_host)
        inverter = getattr(pipeline, "invert_photo", None)
        if inverter is not None and inverter.stage1_dir is None:
            # A stage-1 run: the viewer's log lies in the run's folder, beside its inversion encoder.
            inverter.stage1_dir = Path(log_filename).parent
    return original(viewer, config, log_filename, datapath, pipeline, *args, **kwargs)


def _wrap(owner, name: str, wrapper) -> None:
    original = getattr(owner, name)
    if getattr(original, "_clipnerf_wrapped", False):
        return

    @functools.wraps(original)
    def wrapped(*args, **kwargs):  # a plain function, so that it binds `self` as a method too
        return wrapper(original, *args, **kwargs)

    wrapped._clipnerf_wrapped = True
    setattr(owner, name, wrapped)


def install() -> None:
    """Wrap nerfstudio's checkpoint loads and viewer start (idempotent)."""
    from nerfstudio.engine.trainer import Trainer
    from nerfstudio.utils import eval_utils
    from nerfstudio.viewer.viewer import Viewer

    _wrap(eval_utils, "eval_load_checkpoint", _safe_eval_load_checkpoint)
    _wrap(Trainer, "_load_checkpoint", _safe_trainer_load_checkpoint)
    _wrap(Viewer, "__init__", _viewer_init)
