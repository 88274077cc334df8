"""Writing results so that nothing is ever half-written or silently lost.

A result is written under a hidden sibling, `.NAME.partial-PID`, and renamed into place when it is
complete. A run killed outright (SIGKILL, power loss) cannot clean up its partial: the next run
writing to the same place removes the partials of processes that no longer exist. Two runs
writing the same folder at once would replace each other's result: a lock on it (held for the
whole run) makes the second one stop at once, saying who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from clipnerf_ns.errors import UserError

LOCK_DIR = Path(tempfile.gettempdir()) / "clipnerf-locks"
_HELD: set[str] = set()  # the targets whose locks this process holds


def partial_path(target: Path) -> Path:
    """This process's hidden sibling of `target` to write into."""
    target = Path(target)
    return target.with_name(f".{target.name}.partial-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove the partials of `target` left by processes that are gone; returns what was removed."""
    target = Path(target)
    removed = []
    for partial in target.parent.glob(f".{target.name}.partial-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


@contextlib.contextmanager
def output_lock(target: Path) -> Iterator[None]:
    """Hold the lock of `target` for the block, or stop at once if another process holds it.

    Re-entrant within a process (a command holds it for its whole run, and `atomic_output_dir`
    takes it again). The lock files live in the temporary folder, one per target path, so nothing
    is left beside the results; they stay there (removing one would let two processes lock
    different files of one name)."""
    key = str(Path(target).resolve())
    lock = LOCK_DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    if key in _HELD:
        yield
        return
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise UserError(f"{target}: another clipnerf process (pid {holder}) is writing here; wait for it "
                            "to finish or choose another output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield this process's partial of `target` to write; it replaces `target` only if the block
    succeeds, and is removed otherwise (partials of killed runs go first)."""
    target = Path(target)
    remove_stale_partials(target)
    partial = partial_path(target)
    try:
        yield partial
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def save_safetensors(tensors: dict, metadata: dict[str, str], path: Path) -> Path:
    """Write a safetensors file atomically (`atomic_file`), readable by all as any data file
    (safetensors itself makes its files private)."""
    from safetensors.torch import save_file  # deferred: torch is slow to import

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as partial:
        save_file({key: value.contiguous() for key, value in tensors.items()}, str(partial), metadata=metadata)
        os.chmod(partial, 0o644)
    return path


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse to write into `out` if it is a file, or a non-empty folder without `overwrite`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: output folder exists and is not empty (pass --overwrite to replace it)")


@contextlib.contextmanager
def atomic_output_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; it replaces `out` only if the block succeeds.

    A failed or interrupted run leaves no half-written `out` behind; a concurrent run to the same
    `out` stops with one line (`output_lock`)."""
    out = Path(out)
    check_output_dir(out, overwrite)
    with output_lock(out):
        check_output_dir(out, overwrite)  # again: a run that held the lock may have just written it
        remove_stale_partials(out)
        tmp = partial_path(out)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)  # `out` may be several new folders deep
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
