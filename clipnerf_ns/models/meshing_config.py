"""How `clipnerf export` takes a mesh from the field, and the one line `ns-export marching-cubes` gets instead
(no torch: the command line reads these at start-up)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Literal

from clipnerf_ns.validation import Bounds


@dataclass
class MeshExtraction:
    """How the mesh is taken from the field."""

    resolution: Annotated[int, Bounds(8, 1024)] = 128
    """Grid cells along the longest side of the object's box (cells are cubes); the time grows with its cube."""
    density_threshold: Annotated[float, Bounds(1e-3, 1e6)] = 20.0
    """The surface is where the field's density reaches this value. Density is per unit of length
    in the collection's world (the unit box): a layer d thick lets exp(-density * d) of the light
    through, so at 20 a layer of 0.01 is 18% opaque. Lower values swell the mesh (haze turns
    solid), higher ones thin it; the default matches the NeRF's own silhouettes (opacity 0.5)
    best on the shipped chairs."""
    min_component_fraction: Annotated[float, Bounds(0, 1)] = 0.05
    """Connected pieces with fewer faces than this fraction of the largest piece's are dropped
    (floaters: wisps of density away from the object). 0 keeps every piece."""
    bounds: Literal["occupied", "scene-box"] = "occupied"
    """Grid extent: the box around the object's occupied cells (finer cells at the same
    resolution), or the whole scene box."""


def no_sdf_field(_config):
    """`sdf_field` of our model configs. In nerfstudio 1.1.5 only `ns-export marching-cubes` asks a
    model config for it (and asserts it exists); a density field has no SDF, so that command stops
    with one line naming what works instead."""
    print("clipnerf_ns: error: ns-export marching-cubes needs an SDF field and clip-nerf has a density field: "
          "use `clipnerf export --load-config CONFIG --object ID --output mesh.ply` (marching cubes on the "
          "density), or ns-export tsdf / poisson / pointcloud", file=sys.stderr)
    raise SystemExit(2)
