"""The package as a wheel: everything it needs at run time is inside it, found without a checkout."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "clipnerf_ns"


def build_wheel(out: Path) -> Path:
    """The project's wheel, built by pip (as a user's install builds it) from a copy of the sources,
    so that the build leaves nothing in the checkout."""
    src = out / "src"
    shutil.copytree(PACKAGE, src / "clipnerf_ns", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out / "dist"), str(src)], check=True, timeout=600)
    (wheel,) = (out / "dist").glob("clipnerf_ns-*.whl")
    return wheel


def test_the_wheel_holds_every_data_file_and_runs_without_the_checkout(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    # The unpacked wheel first on the path, the working directory elsewhere: the shipped prompt
    # libraries, weights and pictures are found inside the package.
    script = (
        "import clipnerf_ns, sys\n"
        "from pathlib import Path\n"
        "from clipnerf_ns.editing.prompts import load_prompt_library\n"
        "from clipnerf_ns.clip.encoder import ClipConfig, ClipEncoder\n"
        "from clipnerf_ns.eval.judge import Judge\n"
        "from clipnerf_ns.app.pretrained import CHAIRS_SMALL, CHAIRS_SMALL_MAPPERS, UNSEEN_CHAIR\n"
        "assert Path(clipnerf_ns.__file__).is_relative_to(Path(sys.argv[1])), clipnerf_ns.__file__\n"
        "libraries = [load_prompt_library(None, c) for c in ('chairs', 'cars')]\n"
        "assert all(lib.shape and lib.appearance and lib.tests for lib in libraries)\n"
        "ClipEncoder.load(ClipConfig(model='compact')); ClipEncoder.load(ClipConfig(model='compact-eval')); Judge.load(None)\n"
        "assert all(p.is_file() for p in (CHAIRS_SMALL, CHAIRS_SMALL_MAPPERS, UNSEEN_CHAIR))\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-c", script, str(site)], cwd=elsewhere, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(site)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # And every data file of the package, not only those the script reads.
    data_files = [p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert sorted(set(data_files) - names) == []
