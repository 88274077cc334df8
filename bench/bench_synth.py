"""Benchmark: the issue's reference dataset job and the renderer's per-view cost.

    python bench/bench_synth.py [--num-objects 100] [--views 24] [--resolution 128]

Prints wall time of `clipnerf synth chairs` (all workers, end to end, through the real CLI) and
the single-core cost of generating and rendering one object.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clipnerf_ns.data.build import ViewPlan
from clipnerf_ns.data.render import render
from clipnerf_ns.data.synth import sample_object


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-objects", type=int, default=100)
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()

    plan = ViewPlan(views=args.views, resolution=args.resolution)
    for category in ("chairs", "cars"):
        gen, ren, faces = [], [], 0
        for seed in range(10):
            t0 = time.perf_counter()
            obj = sample_object(category, np.random.default_rng(seed))
            t1 = time.perf_counter()
            c2ws, intr, _ = plan.cameras(np.random.default_rng(seed))
            render(obj.mesh, c2ws, intr, plan.supersample)
            gen.append(t1 - t0)
            ren.append((time.perf_counter() - t1) / len(c2ws))
            faces += len(obj.mesh.mesh.faces)
        print(f"{category}: generate one object {1e3 * np.mean(gen):.1f} ms, render one "
              f"{args.resolution}px view {1e3 * np.mean(ren):.1f} ms (one core), {faces // 10} faces per object")

    clipnerf = Path(sys.executable).parent / "clipnerf"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(clipnerf), "synth", "chairs", "--num-objects", str(args.num_objects), "--views", str(args.views),
               "--resolution", str(args.resolution), "--out", f"{tmp}/chairs"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        elapsed = time.perf_counter() - start
        images = len(list(Path(tmp, "chairs").glob("*/images/*.png")))
    print(f"`clipnerf synth chairs --num-objects {args.num_objects} --views {args.views} --resolution "
          f"{args.resolution}`: {elapsed:.1f} s wall for {images} images ({images / elapsed:.0f} images/s)")


if __name__ == "__main__":
    main()
