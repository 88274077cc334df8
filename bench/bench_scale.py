"""Scale figures (not a test): `ns-train clip-nerf-small` on 40, 500 and 2,000 chairs, nerfstudio's
all-in-memory cache against streaming from disk (`--pipeline.datamanager.streaming on|off`).

For each collection size and path, one ns-train process (the real CLI) trains `--steps` steps;
reported: its peak RSS (the kernel's, from wait4), the median of nerfstudio's "Train Rays / Sec"
after the first rows, and the time from launch to the first training step (the first row's time
less its steps at the median step time). The sizes are the first N training objects of one
collection, training and held-out objects alike (`clipnerf-collection --objects all --max-objects N`):

    clipnerf synth chairs --num-objects 2000 --views 24 --resolution 64 --seed 7 --out /tmp/scale/chairs2000
    OMP_NUM_THREADS=2 python bench/bench_scale.py --data /tmp/scale/chairs2000 [--sizes 40 500 2000 --steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
ROW = re.compile(r"^(\d+) \(\s*[\d.]+%\)\s+([\d.]+) (ms|s)\s+.*?([\d.]+) ?([KM]?)\s*$")
UNITS = {"": 1.0, "K": 1e3, "M": 1e6}


def parse_rows(lines: list[tuple[float, str]]) -> list[tuple[float, int, float, float]]:
    """(time seen, step, step seconds, rays/s) of nerfstudio's local-writer rows, in order."""
    rows = []
    for seen, line in lines:
        match = ROW.match(line.strip())
        if match:
            step, iteration, unit, rays, scale = match.groups()
            rows.append((seen, int(step), float(iteration) / (1000.0 if unit == "ms" else 1.0), float(rays) * UNITS[scale]))
    return rows


def train_once(data: Path, objects: int, streaming: str, steps: int, out: Path) -> dict:
    """One ns-train process; its peak RSS, rays/s and time to the first step."""
    command = [str(BIN / "ns-train"), "clip-nerf-small", "--data", str(data), "--output-dir", str(out),
               "--max-num-iterations", str(steps), "--steps-per-save", str(10 * steps), "--steps-per-eval-batch", str(10 * steps),
               "--steps-per-eval-image", str(10 * steps), "--machine.device-type", "cpu", "--vis", "tensorboard",
               "--logging.steps-per-log", "10", "--logging.local-writer.max-log-size", "0",
               "--pipeline.datamanager.streaming", streaming,
               "clipnerf-collection", "--alpha-color", "none", "--objects", "all", "--max-objects", str(objects)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    lines = [(time.perf_counter() - start, line) for line in process.stdout]
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"ns-train failed:\n{''.join(line for _, line in lines[-30:])}")
    rows = parse_rows(lines)
    if len(rows) < 3:
        raise SystemExit(f"too few log rows ({len(rows)}); ns-train printed:\n{''.join(line for _, line in lines[-30:])}")
    steady = rows[2:]
    step_seconds = float(np.median([r[2] for r in steady]))
    seen, step = rows[0][0], rows[0][1]
    return {"objects": objects, "streaming": streaming, "peak_rss_gb": usage.ru_maxrss / 1e6,
            "rays_per_s": float(np.median([r[3] for r in steady])), "first_step_s": seen - step * step_seconds,
            "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a collection of at least max(--sizes) training objects")
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 500, 2000])
    parser.add_argument("--paths", nargs="+", default=["off", "on"], choices=["off", "on"],
                        help="datamanager paths: off = nerfstudio's cache, on = streaming")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for objects in args.sizes:
        for streaming in args.paths:
            with tempfile.TemporaryDirectory() as out:
                result = train_once(args.data, objects, streaming, args.steps, Path(out))
            results.append(result)
            print(f"{objects:5d} objects, streaming {streaming:3s}: peak RSS {result['peak_rss_gb']:.2f} GB, "
                  f"{result['rays_per_s'] / 1e3:.1f} K rays/s, first step after {result['first_step_s']:.1f} s "
                  f"({result['wall_s']:.0f} s in all)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
