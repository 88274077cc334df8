"""Arbitrary meshes on disk -> normalised, coloured objects for the mesh renderer.

Discovery rules (``discover_meshes``):
- ``root`` is a mesh file: one object.
- mesh files directly inside ``root``: one object each (id = file stem).
- a folder below ``root`` that directly holds mesh files: one object whose parts are those
  files (PartNet layout ``<id>/original-*.obj``; id = folder name, or the parent's name for
  ShapeNet's ``<id>/models/`` layout). Folders without mesh files are searched recursively.
- ``root`` itself holds a ``meta.json`` next to its mesh files (one PartNet object): one object.
Hidden files/folders and files with other suffixes are ignored.

Normalisation (``load_colored_mesh``): the world is z-up and objects face +x, as the procedural
ones do. With ``up="y"`` (ShapeNet, PartNet, front towards file +z) the axes are cycled: file
+y -> world +z, file +z -> world +x, file +x -> world +y (a rotation). The PartNet chairs have
their backrest at file -z, so they face world +x like `synth` chairs. Then the bounding box is centred
on x = y = 0, scaled so the largest extent is 1, and moved so the object stands on the floor
z = -0.5; it fits [-0.5, 0.5]^3.

PartNet labels (a ``result.json`` beside the part files, `data.partnet`): the chair is scaled to
the largest size that fits the procedural chairs' frame (`synth.FRAME_EXTENTS`, 0.7 x 0.7 x 1), so
its sizes compare with theirs; its attributes (back style and height, recline, arms, legs, seat)
are measured on the labelled parts, each part gets a named colour as `synth` chairs do
(``colors="parts"``), and it is captioned like them.
"""

from __future__ import annotations

import colorsys
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from clipnerf_ns.data.captions import make_captions
from clipnerf_ns.data.partnet import LABELS_FILE, OTHER, Faces, PartLabels, chair_attributes, read_part_labels
from clipnerf_ns.data.render import ColoredMesh
from clipnerf_ns.data.synth import FRAME_EXTENTS
from clipnerf_ns.data.synth_chairs import chair_kind, chair_part_shades, sample_chair_colors
from clipnerf_ns.errors import UserError

MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".off", ".stl")
COLOR_MODES = ("parts", "palette", "materials", "gray")
GRAY = (0.6, 0.6, 0.6)


@dataclass
class MeshSource:
    """One object to render: a single mesh file, or the part files of one folder."""

    object_id: str  # sanitised to [A-Za-z0-9_-], unique within one discovery
    paths: list[Path]  # one file, or part files sorted naturally
    root: Path | None = None  # discovery root; attributes give paths relative to it
    folder: Path | None = None  # set for folder (multi-part) objects; meta.json lives here


def _natural_key(path: Path) -> list:
    # "original-2" before "original-10": compare digit runs as numbers.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _sanitise(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "mesh"


def _is_mesh(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in MESH_SUFFIXES and not path.name.startswith(".")


def _children(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=_natural_key)


def _collect_folders(folder: Path, out: list[tuple[str, list[Path], Path | None]]) -> None:
    parts = [p for p in _children(folder) if _is_mesh(p)]
    if parts:
        name = folder.parent.name if folder.name == "models" else folder.name
        out.append((name, parts, folder))
        return  # a part folder is one object: its subfolders are not separate objects
    for sub in _children(folder):
        if sub.is_dir():
            _collect_folders(sub, out)


def discover_meshes(root: Path) -> list[MeshSource]:
    """Find every object under ``root`` (see the module docstring), sorted by object id."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: no such file or folder")
    found: list[tuple[str, list[Path], Path | None]] = []
    if root.is_file():
        if root.suffix.lower() not in MESH_SUFFIXES:
            raise UserError(f"{root}: not a mesh file (expected one of {', '.join(MESH_SUFFIXES)})")
        found.append((root.stem, [root], None))
        base = root.parent
    elif (root / "meta.json").is_file() and any(_is_mesh(p) for p in root.iterdir()):
        base = root.parent
        _collect_folders(root, found)
    else:
        base = root
        for child in _children(root):
            if _is_mesh(child):
                found.append((child.stem, [child], None))
            elif child.is_dir():
                _collect_folders(child, found)
    if not found:
        raise UserError(f"no meshes ({', '.join(MESH_SUFFIXES)}) found under {root}")

    # Deterministic de-duplication: first in path order keeps the plain id, others get -2, -3...
    found.sort(key=lambda f: (_sanitise(f[0]), [_natural_key(p) for p in f[1]]))
    used: set[str] = set()
    sources = []
    for name, paths, folder in found:
        base_id = object_id = _sanitise(name)
        k = 2
        while object_id in used:
            object_id, k = f"{base_id}-{k}", k + 1
        used.add(object_id)
        sources.append(MeshSource(object_id, paths, root=base, folder=folder))
    return sorted(sources, key=lambda s: s.object_id)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _load_parts(path: Path) -> list[trimesh.Trimesh]:
    """Every triangle geometry in one file, with scene transforms applied."""
    try:
        # process=False: keep the file's vertices as they are, so non-finite ones are reported
        # instead of silently dropped with their faces.
        loaded = trimesh.load(str(path), force=None, process=False)
    except Exception as exc:  # trimesh raises many types for malformed files
        raise UserError(f"{path}: cannot load mesh ({_one_line(exc)})") from None
    geoms = loaded.dump() if isinstance(loaded, trimesh.Scene) else [loaded]
    parts = [g for g in geoms if isinstance(g, trimesh.Trimesh) and len(g.faces) > 0]
    if not parts:
        raise UserError(f"{path}: not a triangle mesh (no faces found)")
    for part in parts:
        if not np.isfinite(part.vertices).all():
            raise UserError(f"{path}: mesh has non-finite vertex coordinates")
    return parts


def _material_colors(part: trimesh.Trimesh) -> np.ndarray | None:
    """(F, 3) colours from the file (face/vertex colours, material colour, texture), or None."""
    visual, n_faces = part.visual, len(part.faces)
    try:
        if isinstance(visual, trimesh.visual.ColorVisuals):
            if visual.kind is None:
                return None  # trimesh's default grey: the file had no colour
            colors = np.asarray(visual.face_colors)
        elif isinstance(visual, trimesh.visual.TextureVisuals):
            # to_color() samples the texture at each vertex, or gives the material's main colour.
            vc = np.asarray(visual.to_color().vertex_colors)
            if vc.ndim == 1:
                colors = np.tile(vc, (n_faces, 1))
            elif len(vc) == len(part.vertices):
                colors = trimesh.visual.color.vertex_to_face_color(vc, part.faces)
            else:
                return None
        else:
            return None
    except Exception:  # broken texture or material: treat as "no colour"
        return None
    if colors.ndim != 2 or len(colors) != n_faces or colors.shape[1] < 3:
        return None
    return colors[:, :3].astype(np.float32) / 255.0


def palette(n: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """``n`` pleasant, distinct colours: golden-ratio hue steps from a random start."""
    h0 = rng.random()
    out = []
    for i in range(n):
        s, v = rng.uniform(0.35, 0.65), rng.uniform(0.7, 0.95)
        out.append(colorsys.hsv_to_rgb((h0 + 0.618034 * i) % 1.0, s, v))
    return out


def load_colored_mesh(
    source: MeshSource, rng: np.random.Generator, colors: str = "parts", up: str = "y"
) -> ColoredMesh:
    """Load, colour and normalise one object (see the module docstring for the frame)."""
    return load_object(source, rng, colors, up)[0]


def load_object(
    source: MeshSource, rng: np.random.Generator, colors: str = "parts", up: str = "y"
) -> tuple[ColoredMesh, dict, list[str]]:
    """The normalised coloured mesh, its JSON-serialisable attributes for collection.json and its
    captions (none unless PartNet labels say what its parts are), reading the files once."""
    if colors not in COLOR_MODES:
        raise UserError(f"colors must be one of {', '.join(COLOR_MODES)}, got {colors!r}")
    if up not in ("y", "z"):
        raise UserError(f"up must be 'y' or 'z', got {up!r}")
    loaded = [(path, part) for path in source.paths for part in _load_parts(path)]
    parts = [part for _, part in loaded]
    labels = read_part_labels(source.folder) if source.folder else None
    if labels is None:
        verts = _fit(source, _world_vertices(parts, up), (1.0, 1.0, 1.0))
        return _paint(parts, verts, _file_colors(parts, rng, colors)), _describe(source, parts), []
    return _labelled_chair(source, loaded, labels, rng, colors, up)


def _world_vertices(parts: list[trimesh.Trimesh], up: str) -> list[np.ndarray]:
    verts = [np.asarray(part.vertices, dtype=np.float64) for part in parts]
    # cyclic axis permutation (a rotation): +y -> +z, +z -> +x
    return [v[:, [2, 0, 1]] for v in verts] if up == "y" else verts


def _fit(source: MeshSource, verts: list[np.ndarray], box: tuple[float, float, float]) -> list[np.ndarray]:
    """Centre the object in x and y, stand it on z = -0.5 and scale it to the largest size that fits
    a box of the given extents (the unit cube, or a category's frame)."""
    v = np.concatenate(verts)
    lo, hi = v.min(axis=0), v.max(axis=0)
    extent = hi - lo
    if not extent.max() > 1e-12:
        raise UserError(f"{source.folder or source.paths[0]}: degenerate object (zero extent)")
    divisor = max(e / b for b, e in zip(box, extent))
    shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return [(p - shift) / divisor + np.array([0.0, 0.0, -0.5]) for p in verts]


def _file_colors(parts: list[trimesh.Trimesh], rng: np.random.Generator, colors: str) -> list[np.ndarray]:
    """(F, 3) colours per part: the file's own ("materials", where it has them), gray, or a palette
    colour per part ("palette", and "parts" when nothing labels the parts)."""
    fallback = palette(len(parts), rng)
    out = []
    for part, fb in zip(parts, fallback):
        rgb = _material_colors(part) if colors == "materials" else None
        if rgb is None:
            flat = GRAY if colors == "gray" else fb
            rgb = np.tile(np.asarray(flat, np.float32), (len(part.faces), 1))
        out.append(rgb)
    return out


def _paint(parts: list[trimesh.Trimesh], verts: list[np.ndarray], colors: list[np.ndarray],
           groups: list[str] | None = None) -> ColoredMesh:
    faces, offset = [], 0
    for part, v in zip(parts, verts):
        faces.append(np.asarray(part.faces, dtype=np.int64) + offset)
        offset += len(v)
    mesh = trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), process=False)
    face_parts = None if groups is None else np.repeat(np.array(groups), [len(f) for f in faces])
    return ColoredMesh(mesh, np.concatenate(colors), face_parts)


def _labelled_chair(source: MeshSource, loaded: list, labels: PartLabels, rng: np.random.Generator,
                    colors: str, up: str) -> tuple[ColoredMesh, dict, list[str]]:
    """A PartNet chair: fitted to the chairs' frame like `synth` chairs, its attributes measured on
    its labelled parts, coloured with a named colour per part ("parts"), and captioned."""
    stems = {path.stem for path, _ in loaded}
    missing = sorted(set(labels.group_of) - stems)
    if missing:
        raise UserError(f"{source.folder / LABELS_FILE}: names part files that are not there: {', '.join(missing[:3])}")
    parts = [part for _, part in loaded]
    verts = _fit(source, _world_vertices(parts, up), FRAME_EXTENTS["chairs"])
    group = [labels.group_of.get(path.stem, OTHER) for path, _ in loaded]
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(group):
        by_group.setdefault(g, []).append(i)
    faces = {g: _group_faces([verts[i] for i in idx], [parts[i] for i in idx]) for g, idx in by_group.items()}
    index_of = {path.stem: i for i, (path, _) in enumerate(loaded)}
    legs = [np.concatenate([verts[index_of[s]] for s in leg]) for leg in labels.legs if leg]
    a = chair_attributes(labels, faces, legs)
    if colors == "parts":
        a.update(sample_chair_colors(rng, a["back_style"] == "none", a["armrests"]))
        rgb = chair_part_shades(a, rng)
        face_colors = [np.tile(np.asarray(rgb.get(g, rgb["base"]), np.float32), (len(p.faces), 1))
                       for g, p in zip(group, parts)]
    else:
        a.update(seat_color=None, back_color=None, leg_color=None, arm_color=None)
        face_colors = _file_colors(parts, rng, colors)
    a["kind"] = chair_kind(a)
    captions = make_captions("chairs", a, rng)
    return _paint(parts, verts, face_colors, group), {**_describe(source, parts), **a}, captions


def _group_faces(verts: list[np.ndarray], parts: list[trimesh.Trimesh]) -> Faces:
    offsets = np.cumsum([0] + [len(v) for v in verts[:-1]])
    return Faces.of(np.concatenate(verts), np.concatenate([np.asarray(p.faces) + o for p, o in zip(parts, offsets)]))


def _describe(source: MeshSource, parts: list[trimesh.Trimesh]) -> dict:
    """Where the object came from, its part and face counts, and its meta.json if any."""
    rel = []
    for p in source.paths:
        try:
            rel.append(p.relative_to(source.root).as_posix() if source.root else p.as_posix())
        except ValueError:
            rel.append(p.as_posix())
    out: dict = {
        "source": rel,
        "num_parts": len(parts),
        "num_faces": int(sum(len(p.faces) for p in parts)),
    }
    meta_path = source.folder / "meta.json" if source.folder else None
    if meta_path is not None and meta_path.is_file():
        try:
            out["meta"] = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            pass  # meta is optional decoration; a broken one is simply left out
    return out
