"""Mesh discovery, loading, normalisation and colouring: real PartNet chairs, generated files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from clipnerf_ns.data.meshes import MeshSource, discover_meshes, load_colored_mesh, load_object
from clipnerf_ns.errors import UserError

SHARED_MESHES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "meshes"
PARTNET = SHARED_MESHES / "partnet_chairs"
needs_partnet = pytest.mark.skipif(
    not PARTNET.is_dir(), reason=f"real PartNet chairs not available at {PARTNET}"
)


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _bounds(cm) -> tuple[np.ndarray, np.ndarray]:
    v = cm.mesh.vertices
    return v.min(axis=0), v.max(axis=0)


def _assert_unit_box(cm) -> None:
    lo, hi = _bounds(cm)
    assert np.max(hi - lo) == pytest.approx(1.0, abs=1e-5)
    assert lo[2] == pytest.approx(-0.5, abs=1e-5)
    np.testing.assert_allclose((lo[:2] + hi[:2]) / 2, 0.0, atol=1e-5)
    assert np.all(lo >= -0.5 - 1e-5) and np.all(hi <= 0.5 + 1e-5)


def _box(extents, color=None) -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=extents)
    if color is not None:
        box.visual.face_colors = color
    return box


# ---------------------------------------------------------------- discovery


@needs_partnet
def test_discovers_partnet_chairs_with_their_parts():
    sources = discover_meshes(PARTNET)
    expected = sorted(d.name for d in PARTNET.iterdir() if d.is_dir())
    assert len(sources) == 6
    assert [s.object_id for s in sources] == expected
    for s in sources:
        files = list((PARTNET / s.object_id).glob("original-*.obj"))
        assert len(s.paths) == len(files)
        numbers = [int(p.stem.split("-")[1]) for p in s.paths]
        assert numbers == sorted(numbers)  # natural order, not lexicographic


@needs_partnet
def test_discovery_recurses_from_the_shared_root_and_ignores_other_files():
    # SHARED_MESHES holds README.md and partnet_chairs/<id>/...
    assert [s.object_id for s in discover_meshes(SHARED_MESHES)] == [
        s.object_id for s in discover_meshes(PARTNET)
    ]


@needs_partnet
def test_a_single_partnet_folder_is_one_object():
    folder = PARTNET / "2323"
    (source,) = discover_meshes(folder)
    assert source.object_id == "2323" and len(source.paths) == 7


def test_mixed_root_natural_sort_sanitising_and_duplicates(tmp_path):
    _box((1, 1, 1)).export(tmp_path / "my chair!.obj")
    _box((1, 1, 1)).export(tmp_path / "dup.ply")
    (tmp_path / "notes.txt").write_text("not a mesh")
    parts = tmp_path / "dup"
    parts.mkdir()
    for n in (10, 2, 1):
        _box((1, 1, 1)).export(parts / f"original-{n}.obj")
    sources = discover_meshes(tmp_path)
    assert [s.object_id for s in sources] == ["dup", "dup-2", "my_chair"]
    folder_source = next(s for s in sources if len(s.paths) == 3)
    names = [p.name for p in folder_source.paths]
    assert names == ["original-1.obj", "original-2.obj", "original-10.obj"]


def test_single_file_root(tmp_path):
    path = tmp_path / "box.stl"
    _box((1, 2, 3)).export(path)
    (source,) = discover_meshes(path)
    assert source.object_id == "box" and source.paths == [path]


def test_discovery_errors(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        discover_meshes(tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"no meshes \(.obj"):
        discover_meshes(tmp_path)
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(UserError, match=str(tmp_path.name)):
        discover_meshes(tmp_path)
    with pytest.raises(UserError, match="readme.txt"):
        discover_meshes(tmp_path / "readme.txt")


# ---------------------------------------------------------------- loading and normalisation


@needs_partnet
def test_real_chairs_fit_the_unit_box_and_stand_upright():
    for source in discover_meshes(PARTNET):
        cm = load_colored_mesh(source, _rng())
        _assert_unit_box(cm)
        assert len(cm.face_colors) == len(cm.mesh.faces)
        # PartNet is y-up: after conversion a chair is taller than deep.
        lo, hi = _bounds(cm)
        assert hi[2] - lo[2] > 0.5 * (hi[1] - lo[1])


def test_y_up_conversion_stands_a_tall_box_upright(tmp_path):
    path = tmp_path / "tall.obj"
    _box((0.2, 2.0, 0.4)).export(path)
    source = discover_meshes(path)[0]
    lo, hi = _bounds(load_colored_mesh(source, _rng(), up="y"))
    np.testing.assert_allclose(hi - lo, [0.2, 0.1, 1.0], atol=1e-6)  # file z -> x, x -> y
    lo, hi = _bounds(load_colored_mesh(source, _rng(), up="z"))
    np.testing.assert_allclose(hi - lo, [0.1, 1.0, 0.2], atol=1e-6)


def test_y_up_rotation_sends_file_plus_z_to_world_plus_x(tmp_path):
    # A tall post with a small block in front of it at file +z (a "seat" pointing forward).
    post = _box((0.2, 2.0, 0.2))
    block = _box((0.2, 0.2, 0.6)).apply_translation([0, -0.5, 0.4])
    path = tmp_path / "marker.ply"
    trimesh.util.concatenate([post, block]).export(path)
    cm = load_colored_mesh(discover_meshes(path)[0], _rng(), up="y")
    lo, hi = _bounds(cm)
    assert hi[2] - lo[2] == pytest.approx(1.0)
    v = cm.mesh.vertices
    post, block = v[cm.mesh.faces[:12]].mean(axis=(0, 1)), v[cm.mesh.faces[12:]].mean(axis=(0, 1))
    assert block[0] > post[0] + 0.1  # the block sticks out towards world +x, the common front
    assert block[1] == pytest.approx(post[1], abs=1e-9)
    assert block[2] < post[2]  # file -y is lower


def test_off_centre_sphere_ply_is_normalised(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=3.0)
    sphere.apply_translation([5.0, -2.0, 7.0])
    path = tmp_path / "sphere.ply"
    sphere.export(path)
    _assert_unit_box(load_colored_mesh(discover_meshes(path)[0], _rng()))


# ---------------------------------------------------------------- colours


def _part_folder(tmp_path: Path, n: int = 3) -> MeshSource:
    folder = tmp_path / "thing"
    folder.mkdir()
    for i in range(n):
        _box((1, 1, 1)).apply_translation([2.0 * i, 0, 0]).export(folder / f"part-{i}.obj")
    return discover_meshes(tmp_path)[0]


def test_palette_gives_each_part_its_own_colour(tmp_path):
    source = _part_folder(tmp_path)
    cm = load_colored_mesh(source, _rng(), colors="palette")
    per_part = cm.face_colors.reshape(3, 12, 3)  # a box has 12 triangles
    assert np.all(per_part == per_part[:, :1])  # uniform within a part
    firsts = per_part[:, 0]
    assert len({tuple(c) for c in firsts}) == 3
    assert cm.face_colors.min() >= 0 and cm.face_colors.max() <= 1
    # Same seed, same colours; another seed, other colours.
    np.testing.assert_array_equal(load_colored_mesh(source, _rng()).face_colors, cm.face_colors)
    other = load_colored_mesh(source, np.random.default_rng(1)).face_colors
    assert not np.array_equal(other, cm.face_colors)


def test_gray_is_one_colour(tmp_path):
    cm = load_colored_mesh(_part_folder(tmp_path), _rng(), colors="gray")
    assert len(np.unique(cm.face_colors, axis=0)) == 1


def test_materials_recovers_face_colours_from_ply(tmp_path):
    path = tmp_path / "red.ply"
    _box((1, 1, 1), color=[200, 30, 40, 255]).export(path)
    cm = load_colored_mesh(discover_meshes(path)[0], _rng(), colors="materials")
    expected = np.tile([200 / 255, 30 / 255, 40 / 255], (12, 1))
    np.testing.assert_allclose(cm.face_colors, expected, atol=1e-6)


def test_materials_from_glb_scene_counts_each_geometry_as_a_part(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(_box((1, 1, 1), color=[10, 120, 250, 255]), node_name="a", geom_name="a")
    scene.add_geometry(
        _box((1, 1, 1), color=[250, 200, 0, 255]),
        node_name="b",
        geom_name="b",
        transform=trimesh.transformations.translation_matrix([3, 0, 0]),
    )
    path = tmp_path / "two.glb"
    scene.export(path)
    source = discover_meshes(path)[0]
    cm = load_colored_mesh(source, _rng(), colors="materials")
    colours = {tuple(np.round(c * 255).astype(int)) for c in cm.face_colors}
    assert colours == {(10, 120, 250), (250, 200, 0)}
    assert load_object(source, _rng(), colors="materials")[1]["num_parts"] == 2
    _assert_unit_box(cm)


def test_materials_reads_material_colour_and_texture_from_glb(tmp_path):
    from PIL import Image

    plain = _box((1, 1, 1))
    plain.visual = trimesh.visual.TextureVisuals(
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=[0.2, 0.8, 0.4, 1.0])
    )
    plain.export(tmp_path / "pbr.glb")
    textured = _box((1, 1, 1))
    uv = np.random.default_rng(0).random((len(textured.vertices), 2))
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    textured.visual = trimesh.visual.TextureVisuals(uv=uv, image=red)
    textured.export(tmp_path / "tex.glb")
    for name, rgb in [("pbr.glb", (51, 204, 102)), ("tex.glb", (255, 0, 0))]:
        cm = load_colored_mesh(discover_meshes(tmp_path / name)[0], _rng(), colors="materials")
        np.testing.assert_allclose(cm.face_colors, np.tile(np.array(rgb) / 255, (12, 1)), atol=1e-6)


def test_materials_falls_back_to_palette_without_file_colours(tmp_path):
    source = _part_folder(tmp_path, n=2)
    materials = load_colored_mesh(source, _rng(), colors="materials").face_colors
    palette = load_colored_mesh(source, _rng(), colors="palette").face_colors
    np.testing.assert_array_equal(materials, palette)


# ---------------------------------------------------------------- describe


@needs_partnet
def test_describe_partnet_chair():
    source = next(s for s in discover_meshes(PARTNET) if s.object_id == "2323")
    mesh, info, captions = load_object(source, _rng())
    json.dumps(info)
    assert info["source"][0] == "2323/original-1.obj"
    assert info["num_parts"] == 7
    assert info["num_faces"] == len(mesh.mesh.faces)
    assert info["meta"]["model_id"] == "1d1c829a54f0ae426cdb122727dd360f"
    assert captions == []  # no result.json: nothing says which part is the seat


def test_describe_omits_broken_meta(tmp_path):
    source = _part_folder(tmp_path, n=1)
    (tmp_path / "thing" / "meta.json").write_text("{not json")
    info = load_object(source, _rng())[1]
    assert "meta" not in info and info["source"] == ["thing/part-0.obj"]


# ---------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("renamed.obj", "This is a text file, not a mesh.\nJust words.\n", "no faces"),
        ("empty.obj", "", "no faces"),
        ("points.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
        ("nan.obj", "v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n", "non-finite"),
        ("point.obj", "v 0.5 0.5 0.5\nv 0.5 0.5 0.5\nv 0.5 0.5 0.5\nf 1 2 3\n", "degenerate"),
        ("garbage.glb", "glTF? no", "cannot load"),
        ("garbage.ply", "ply\nformat nonsense\n", "cannot load"),
    ],
)
def test_bad_files_raise_user_error_naming_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_text(content)
    source = MeshSource("x", [path])
    with pytest.raises(UserError) as info:
        load_colored_mesh(source, _rng())
    message = str(info.value)
    assert name in message and problem in message and "\n" not in message


def test_a_bad_part_is_named_among_good_ones(tmp_path):
    _part_folder(tmp_path, n=2)
    bad = tmp_path / "thing" / "part-5.obj"
    bad.write_text("hello")
    source = discover_meshes(tmp_path)[0]
    assert len(source.paths) == 3
    with pytest.raises(UserError, match="part-5.obj"):
        load_colored_mesh(source, _rng())


def test_bad_options_raise_user_error(tmp_path):
    path = tmp_path / "box.obj"
    _box((1, 1, 1)).export(path)
    source = discover_meshes(path)[0]
    with pytest.raises(UserError, match="colors"):
        load_colored_mesh(source, _rng(), colors="rainbow")
    with pytest.raises(UserError, match="up"):
        load_colored_mesh(source, _rng(), up="x")
