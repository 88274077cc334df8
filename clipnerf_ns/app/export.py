"""`clipnerf export`: one object of a trained run, a training object or codes from `clipnerf edit`
/ `clipnerf invert`, as a coloured triangle mesh (PLY, OBJ or GLB); how the mesh is made is
`models.meshing`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional

import numpy as np
import tyro

from clipnerf_ns.app.runs import resolve_object
from clipnerf_ns.atomic import atomic_file
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.meshing_config import MeshExtraction

if TYPE_CHECKING:  # torch and trimesh are imported by the command that runs, not at start-up
    import trimesh

    from clipnerf_ns.codes import Codes
    from clipnerf_ns.models.clip_nerf import ClipNerfModel

MESH_FORMATS = {".ply": "ply", ".obj": "obj", ".glb": "glb"}


@dataclass
class ExportCommand:
    """Export one object of a trained run (clip-nerf or mapper run) as a coloured triangle mesh:
    marching cubes on the field's density, vertex colours from its colour head, at the object's
    real size and orientation (the collection's world frame). The format follows the output's
    extension: .ply, .obj or .glb."""

    load_config: Path
    """The run's config.yml (written by ns-train)."""
    output: Path
    """Mesh file to write (atomically): chair.ply, chair.obj or chair.glb."""
    object: Optional[str] = None
    """The object to export: a training object's id (chair_0007) or index."""
    codes: Optional[Path] = None
    """The object to export: a codes file (from clipnerf edit or clipnerf invert)."""
    mesh: Annotated[MeshExtraction, tyro.conf.OmitArgPrefixes] = field(default_factory=MeshExtraction)
    """The extraction."""
    up: Literal["z", "y"] = "z"
    """Up axis of the file: z keeps the collection's world frame; y turns the object for tools that
    expect y up (glTF viewers, Blender's glTF import)."""
    overwrite: bool = False
    """Replace the output file if it exists."""

    def main(self) -> Path:
        if (self.object is None) == (self.codes is None):
            raise UserError("give the object to export with exactly one of --object ID or --codes FILE")
        mesh_format(self.output)
        if self.output.exists() and not self.overwrite:
            raise UserError(f"{self.output}: exists (pass --overwrite to replace it)")
        # deferred: the command line imports this module at start-up, and these import torch and nerfstudio
        from clipnerf_ns.models.meshing import extract_mesh, open_edge_fraction
        from clipnerf_ns.pipelines.runs import load_run, nerf_of

        _, pipeline = load_run(self.load_config)
        nerf = nerf_of(pipeline)
        codes = chosen_codes(nerf, self.object, self.codes)
        mesh = extract_mesh(nerf, codes, self.mesh)
        if self.up == "y":
            mesh.apply_transform(Z_UP_TO_Y_UP)
        write_mesh(mesh, self.output)
        print(f"{len(mesh.vertices)} vertices, {len(mesh.faces)} faces, size {np.ptp(mesh.vertices, axis=0).round(3).tolist()}, "
              f"{'watertight' if mesh.is_watertight else f'{open_edge_fraction(mesh):.2%} open edges'}")
        return self.output


# x stays, y becomes -z, z becomes y: a rotation about x by -90 degrees.
Z_UP_TO_Y_UP = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])


def mesh_format(path: Path) -> str:
    """trimesh's file type for an output path, from its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in MESH_FORMATS:
        raise UserError(f"{path}: unknown mesh format {suffix or '(no extension)'!r}; use .ply, .obj or .glb")
    return MESH_FORMATS[suffix]


def chosen_codes(nerf: ClipNerfModel, object_name: Optional[str], codes_path: Optional[Path]) -> Codes:
    """The codes of a training object (id or index) or of a codes file made for this field."""
    import torch  # deferred: the command line imports this module at start-up

    if codes_path is not None:
        return nerf.read_codes_file(codes_path).to(nerf.box_min.device)
    index = resolve_object(nerf.object_ids, object_name)
    return nerf.object_codes(torch.tensor(index, device=nerf.box_min.device)).detach()


def write_mesh(mesh: trimesh.Trimesh, path: Path) -> Path:
    """Write the mesh in the format of `path`'s extension, atomically (a temporary file, then a rename)."""

    path = Path(path)
    file_type = mesh_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as partial:
        mesh.export(partial, file_type=file_type)
    return path


