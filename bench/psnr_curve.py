"""Held-out-view PSNR of a clip-nerf run against wall-clock training time, from its checkpoints.

Train with `--steps-per-save N --save-only-latest-checkpoint False`, then:

    python bench/psnr_curve.py RUN/config.yml [--every 3000] [--plot curve.png]

Time is measured from when ns-train wrote config.yml to when it wrote each checkpoint.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro
from nerfstudio.utils.eval_utils import eval_setup


@dataclass
class Args:
    config: tyro.conf.Positional[Path]
    """The run's config.yml."""
    every: int = 3000
    """Evaluate checkpoints whose step is a multiple of this (the last one always)."""
    plot: Optional[Path] = None
    """Also draw the curve into this PNG."""
    csv_out: Optional[Path] = None
    """Also write the table as CSV."""


def checkpoint_step(path: Path) -> int:
    return int(path.stem.split("-")[1])


def main(args: Args) -> None:
    checkpoints = sorted(args.config.parent.glob("nerfstudio_models/step-*.ckpt"), key=checkpoint_step)
    if not checkpoints:
        sys.exit(f"no checkpoints beside {args.config}")
    chosen = [c for c in checkpoints if checkpoint_step(c) % args.every == 0 or c == checkpoints[-1]]
    start = args.config.stat().st_mtime
    rows = []
    for ckpt in chosen:
        step = checkpoint_step(ckpt)

        def at_step(config, step=step):
            config.load_step = step
            return config

        _, pipeline, _, _ = eval_setup(args.config, test_mode="test", update_config_callback=at_step)
        metrics = pipeline.get_average_eval_image_metrics()
        rows.append((step, (ckpt.stat().st_mtime - start) / 60, metrics["psnr"], metrics["ssim"]))
        print(f"step {step:6d}  {rows[-1][1]:6.1f} min  PSNR {metrics['psnr']:6.2f} dB  SSIM {metrics['ssim']:.4f}", flush=True)
    if args.csv_out:
        with args.csv_out.open("w", newline="") as f:
            csv.writer(f).writerows([("step", "minutes", "psnr", "ssim"), *rows])
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
        ax.plot([r[1] for r in rows], [r[2] for r in rows], marker="o")
        ax.axhline(27.0, color="gray", linestyle="--", linewidth=1)
        ax.set_xlabel("training time on 2 CPU cores (min)")
        ax.set_ylabel("held-out-view PSNR (dB)")
        ax.set_title(args.config.parent.parent.name)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot)


if __name__ == "__main__":
    main(tyro.cli(Args))
