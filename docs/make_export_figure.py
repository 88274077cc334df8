"""The README's picture of a mesh from `clipnerf export`: views around it, side by side, rendered by
the renderer that makes the collections (unlit: the exported colours already hold the light).

    python docs/make_export_figure.py red_chair.glb --out docs/images/export_red_chair.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
import tyro
from PIL import Image

from clipnerf_ns.data.cameras import orbit_pose
from clipnerf_ns.data.render import box_corners, framing_intrinsics, render
from clipnerf_ns.models.meshing import as_colored_mesh


@dataclass
class Args:
    mesh: tyro.conf.Positional[Path]
    """The exported mesh (PLY, OBJ or GLB, z up as `clipnerf export` writes it)."""
    out: Path = Path("docs/images/export_red_chair.png")
    """PNG to write."""
    views: int = 4
    """Views around the object."""
    size: int = 192
    """Side of each view in pixels."""
    elevation: float = 20.0
    """Camera elevation in degrees."""


def main(args: Args) -> None:
    mesh = trimesh.load(args.mesh, force="mesh")
    corners = box_corners(*mesh.bounds)
    tiles = []
    for i in range(args.views):
        c2w = orbit_pose(2.2, 40.0 + 360.0 * i / args.views, args.elevation)
        k = framing_intrinsics(corners, c2w, args.size, 0.06)
        rgba = render(as_colored_mesh(mesh), c2w[None], k, supersample=3, lit=False).rgba[0] / 255.0
        tiles.append(rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:]))  # over white
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.concatenate(tiles, axis=1) * 255 + 0.5).astype(np.uint8)).save(args.out)
    print(f"{args.out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces")


if __name__ == "__main__":
    main(tyro.cli(Args))
