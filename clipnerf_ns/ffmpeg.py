"""An `ffmpeg` on PATH for ns-render's videos, from the imageio-ffmpeg wheel when the system has none.

nerfstudio checks `shutil.which("ffmpeg")` before rendering any camera path, and mediapy runs
`ffmpeg` to write the MP4; a fresh machine has neither, but the imageio-ffmpeg wheel (one of our
dependencies) ships a static binary under another name. We link it as `ffmpeg` in a cache folder
and put that folder on this process's PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def ensure_ffmpeg_on_path() -> str | None:
    """Path of the `ffmpeg` this process will run, or None when neither the system nor imageio-ffmpeg has one."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        binary = Path(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return None
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clipnerf_ns" / "bin"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "ffmpeg"
    if not link.exists():
        partial = folder / f".ffmpeg-{os.getpid()}"
        partial.unlink(missing_ok=True)
        partial.symlink_to(binary)
        partial.replace(link)
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
    return shutil.which("ffmpeg")
