"""Real chairs with PartNet's part labels: attributes measured on the labelled parts, named part
colours and captions (on a box chair of known sizes, and on the real chairs beside the checkout)."""

import json
from pathlib import Path

import numpy as np
import pytest

from clipnerf_ns.data.attributes import QUESTIONS, question
from clipnerf_ns.data.meshes import GRAY, discover_meshes, load_object
from clipnerf_ns.data.synth_parts import COLOR_SYNONYMS, nearest_color_name
from clipnerf_ns.errors import UserError
from tests.helpers import write_labelled_chair

PARTNET = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "partnet"
needs_partnet = pytest.mark.skipif(not PARTNET.is_dir(), reason=f"real PartNet chairs not available at {PARTNET}")
COLOR_WORDS = {w for words in COLOR_SYNONYMS.values() for w in words}


def _load(folder: Path, seed: int = 0, colors: str = "parts"):
    (source,) = discover_meshes(folder)
    return load_object(source, np.random.default_rng(seed), colors=colors)


def test_box_chair_sizes_are_measured_in_the_chairs_world_frame(tmp_path):
    mesh, a, captions = _load(write_labelled_chair(tmp_path / "chair", tilt_deg=20.0))
    lo, hi = mesh.mesh.bounds
    assert hi[2] == pytest.approx(0.5) and lo[2] == pytest.approx(-0.5)  # height 1: scale 1, on the floor
    assert a["seat_height"] == pytest.approx(0.45, abs=0.002)
    assert a["seat_width"] == pytest.approx(0.5, abs=0.002) and a["seat_depth"] == pytest.approx(0.4, abs=0.002)
    assert a["back_height"] == pytest.approx(0.55, abs=0.002)
    assert a["back_tilt"] == pytest.approx(20.0, abs=1.0)
    assert (a["leg_style"], a["leg_count"], a["stretchers"]) == ("straight", 4, False)
    assert a["leg_thickness"] == pytest.approx(0.04, abs=0.004)
    assert (a["back_style"], a["armrests"], a["seat_shape"], a["kind"]) == ("solid", False, "rectangular", "dining chair")
    answers = {q.name: q.answer(a) for q in QUESTIONS["chairs"]}
    assert answers["back_tilt"] == "reclined" and answers["back_height"] == "high" and answers["leg_count"] == "4"
    assert len(captions) == 6 and all("chair" in c for c in captions)


def test_upright_box_chair(tmp_path):
    a = _load(write_labelled_chair(tmp_path / "chair", tilt_deg=0.0))[1]
    assert abs(a["back_tilt"]) < 1.0
    assert question("chairs", "back_tilt").answer(a) == "upright"


def test_parts_get_their_named_colours_and_captions_name_only_those(tmp_path):
    folder = write_labelled_chair(tmp_path / "chair")
    for seed in range(6):
        mesh, a, captions = _load(folder, seed)
        named = {nearest_color_name(c) for c in np.unique(mesh.face_colors, axis=0)}
        assert named == {a["seat_color"], a["back_color"], a["leg_color"]}
        for part, key in (("seat", "seat_color"), ("back", "back_color"), ("base", "leg_color")):  # each face knows its part
            assert {nearest_color_name(c) for c in mesh.face_colors[mesh.face_parts == part]} == {a[key]}
        allowed = {w for name in named for w in COLOR_SYNONYMS[name]} | {"wooden", "metal", "wood"}
        for caption in captions:
            for word in COLOR_WORDS - allowed:
                assert f" {word} " not in f" {caption} ", (caption, a)


def test_gray_keeps_the_shape_and_names_no_colour(tmp_path):
    mesh, a, captions = _load(write_labelled_chair(tmp_path / "chair"), colors="gray")
    np.testing.assert_allclose(mesh.face_colors, np.tile(GRAY, (len(mesh.face_colors), 1)), atol=1e-6)
    assert a["seat_color"] is None and a["back_height"] == pytest.approx(0.55, abs=0.002)
    assert not any(f" {w} " in f" {c} " for c in captions for w in COLOR_WORDS)


@pytest.mark.parametrize("damage, fragment", [
    (lambda f: (f / "result.json").write_text("[{not json"), "cannot read PartNet labels"),
    (lambda f: (f / "leg3.obj").unlink(), "leg3"),
    (lambda f: (f / "result.json").write_text(json.dumps([{"name": "chair", "children": [
        {"name": "chair_back", "objs": ["back"]}]}])), "chair_seat"),
])
def test_bad_labels_are_one_line_errors(tmp_path, damage, fragment):
    folder = write_labelled_chair(tmp_path / "chair")
    damage(folder)
    with pytest.raises(UserError, match=fragment):
        _load(folder)


# What one sees in the 31 real chairs (their ids are PartNet annotation ids).
REAL = {
    "1325": dict(kind="armchair", armrests=True, leg_style="straight", leg_count=4, back_style="solid"),
    "2320": dict(kind="office chair", armrests=False, leg_style="pedestal", back_style="solid"),
    "39426": dict(back_style="slatted", slat_orientation="vertical", armrests=False),
    "42663": dict(back_style="slatted", armrests=True, kind="armchair"),
    "37658": dict(seat_shape="round", leg_style="splayed", leg_count=4, stretchers=True),
    "3223": dict(leg_style=None, leg_count=None),  # a cantilever: no legs the vocabulary names
    "40096": dict(leg_style=None, armrests=True),  # a cantilever armchair
    "45075": dict(leg_style=None, armrests=True, base_kind="foot_base"),
}


@needs_partnet
@pytest.mark.parametrize("object_id", sorted(REAL))
def test_real_chairs_attributes(object_id):
    mesh, a, captions = _load(PARTNET / object_id)
    json.dumps(a)
    for key, value in REAL[object_id].items():
        assert a[key] == value, (key, a)
    assert a["meta"]["anno_id"] == object_id and a["source_kind"] == "partnet"
    assert captions and len(set(captions)) == len(captions)


@needs_partnet
def test_real_chairs_recline_as_seen():
    folding, upright = _load(PARTNET / "309")[1], _load(PARTNET / "39781")[1]
    assert folding["back_tilt"] >= 16 and abs(upright["back_tilt"]) <= 5
