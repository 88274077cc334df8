"""The viewer panel in this process, element by element: the object picker, the editor's prompt,
exemplar, strength and reset, and what nerfstudio finds of them (the browser test,
test_viewer_browser.py, drives the same panel in the real ns-viewer)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from clipnerf_ns.app.pretrained import GREEN_CHAIR, YELLOW_CHAIR
from clipnerf_ns.data.cameras import orbit_camera
from clipnerf_ns.editing.edit import Edit, with_changes
from clipnerf_ns.pipelines.runs import load_run, nerf_of
from clipnerf_ns.pipelines.viewer_panel import attach_viewer_panel
from tests.helpers import TINY, make_model


def test_strength_rescales_the_last_change_without_encoding_again(pretrained_runs):
    _, pipeline = load_run(pretrained_runs.mappers)
    nerf = nerf_of(pipeline)
    panel = pipeline.edit_object
    encoded = []
    editor = panel.editor()
    original = editor.clip.encode_text
    editor.clip.encode_text = lambda texts: encoded.append(texts) or original(texts)
    try:
        pipeline.choose_object.pick(nerf.object_ids.index(GREEN_CHAIR))
        start, _ = nerf.display_codes()
        panel.a_prompt.value, panel.d_target.value = "a red chair", "appearance"
        panel._apply_from("prompt")
        assert len(encoded) == 1 and panel.j_status.value.startswith("mapper appearance edit")
        full, _ = nerf.display_codes()
        for strength in (0.5, -1.0, 2.0):
            panel.f_strength.value = strength
            panel._on_strength(panel.f_strength)
            shown, _ = nerf.display_codes()
            assert torch.allclose(shown.z_a, start.z_a + strength * (full.z_a - start.z_a), atol=1e-5)
            assert torch.equal(shown.z_s, start.z_s)
        assert len(encoded) == 1  # the slider never re-encodes the prompt
        expected = with_changes(start, editor.changes(Edit(prompt="a red chair", target="appearance"), start), 2.0)
        assert torch.allclose(shown.z_a, expected.z_a, atol=1e-5)  # the viewer's edit is the CLI's edit
        panel._on_reset(None)
        reset, _ = nerf.display_codes()
        assert torch.equal(reset.z_a, start.z_a)
    finally:
        editor.clip.encode_text = original


def test_viewer_edits_report_bad_input_in_the_panel(pretrained_runs, tmp_path):
    _, pipeline = load_run(pretrained_runs.mappers)
    nerf = nerf_of(pipeline)
    panel = pipeline.edit_object
    shown_before, _ = nerf.display_codes()
    panel.a_prompt.value = "   "
    panel._apply_from("prompt")
    assert panel.j_status.value.startswith("error: empty prompt")
    panel.b_exemplar.value = str(tmp_path / "missing.png")
    panel._apply_from("exemplar")
    assert panel.j_status.value.startswith("error:") and "missing.png" in panel.j_status.value
    pipeline.choose_object.b_codes_file.value = str(tmp_path / "nothing.safetensors")
    pipeline.choose_object._on_load_codes_file(None)
    assert panel.j_status.value.startswith("error:")
    shown_after, _ = nerf.display_codes()
    assert torch.equal(shown_before.z_a, shown_after.z_a)  # nothing changed on screen
    bomb = tmp_path / "bomb.png"
    Image.new("L", (9000, 9000)).save(bomb, optimize=True)
    for path in (bomb, tmp_path / "missing.png", tmp_path):  # refused alike, from the header
        panel.b_exemplar.value = str(path)
        panel._apply_from("exemplar")
        assert panel.j_status.value == f"error: cannot use {str(path)!r} as an exemplar: not a readable image file"
    panel.a_prompt.value = "a red chair"
    panel._apply_from("prompt")
    edited, _ = nerf.display_codes()
    panel.f_strength.value = float("nan")  # what a crafted client can send
    panel._on_strength(None)
    assert panel.j_status.value == "error: Strength must be a finite number, got nan"
    assert torch.equal(nerf.display_codes()[0].z_a, edited.z_a)


def test_codes_files_join_the_object_picker(pretrained_runs, tmp_path):
    from clipnerf_ns.codes import model_fingerprint, save_codes

    _, pipeline = load_run(pretrained_runs.mappers)
    nerf = nerf_of(pipeline)
    codes = nerf.object_codes(torch.tensor(5)).detach()
    path = tmp_path / "codes.safetensors"
    save_codes(path, codes, model_fingerprint(nerf.field), {"source": "test"})
    name = pipeline.choose_object.add_codes_file(path)
    assert name in pipeline.choose_object.a_object.options and pipeline.choose_object.a_object.value == name
    shown, _ = nerf.display_codes()
    assert torch.equal(shown.z_s, codes.z_s) and torch.equal(shown.z_a, codes.z_a)


def test_uploaded_exemplar_is_read_like_a_file(pretrained_runs):
    from clipnerf_ns.app.pretrained import UNSEEN_CHAIR
    from clipnerf_ns.editing.edit import read_exemplar
    from clipnerf_ns.errors import UserError
    from clipnerf_ns.pipelines.viewer_panel import exemplar_from_upload

    image = exemplar_from_upload("chair.png", UNSEEN_CHAIR.read_bytes())
    assert torch.equal(image, read_exemplar(UNSEEN_CHAIR))  # framed on the chair, as a file would be
    assert image.shape[0] == image.shape[1] < 64 and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    with pytest.raises(UserError):
        exemplar_from_upload("notes.txt", b"not an image")


def test_a_stage1_run_edits_in_optimize_mode_from_the_panel(pretrained_runs):
    """No mappers: the panel offers optimize mode only, and an exemplar of a yellow chair makes the
    green chair (GREEN_CHAIR) yellower (the shipped chairs model: the compact CLIP knows chairs)."""
    _, pipeline = load_run(pretrained_runs.stage1)
    nerf = nerf_of(pipeline)
    panel = pipeline.edit_object
    assert panel.e_mode.options == ["optimize"] and panel.e_mode.value == "optimize"
    pipeline.choose_object.pick(nerf.object_ids.index(GREEN_CHAIR))
    start, _ = nerf.display_codes()
    panel.b_exemplar.value = str(pretrained_runs.data / YELLOW_CHAIR / "images" / "001.png")
    panel.d_target.value = "appearance"
    panel._apply_from("exemplar")
    assert panel.j_status.value.startswith("optimize appearance edit exemplar"), panel.j_status.value
    edited, _ = nerf.display_codes()
    assert torch.equal(edited.z_s, start.z_s) and not torch.equal(edited.z_a, start.z_a)
    camera = orbit_camera(48, 40.0, 25.0, nerf.orbit)
    before, after = nerf.render_view(camera, start)["rgb"], nerf.render_view(camera, edited)["rgb"]
    mask = (before - 1.0).abs().amax(-1) > 0.15
    yellowness = [float((img[mask][:, 0] + img[mask][:, 1]).mean() / 2 - img[mask][:, 2].mean()) for img in (before, after)]
    assert yellowness[1] > yellowness[0] + 0.2, yellowness


def panel_of(model) -> nn.Module:
    """A module holding `model`'s viewer panel, as the clip-nerf pipelines hold theirs."""
    holder = nn.Module()
    attach_viewer_panel(holder, model, lambda: None, ("optimize",))
    return holder


def test_viewer_object_picker_switches_the_displayed_codes():
    model = make_model()
    picker = panel_of(model).choose_object
    picker.a_object.value = "c"
    picker.a_object.cb_hook(picker.a_object)
    codes, grid = model.display_codes()
    assert torch.equal(codes.z_s, model.shape_codes.weight[2].detach())
    picker.a_object.value = "sample from the code prior"
    picker.a_object.cb_hook(picker.a_object)
    first, _ = model.display_codes()
    picker.d_new_sample.cb_hook(picker.d_new_sample)
    second, _ = model.display_codes()
    assert first.z_s.shape == (TINY.shape_dim,) and not torch.equal(first.z_s, second.z_s)


def test_viewer_panel_lists_the_object_picker_the_editor_then_the_photo_inverter():
    """nerfstudio finds our viewer elements on the pipeline, in this order (it sorts by attribute name)."""
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement

    model = make_model()
    holder = panel_of(model)
    found = parse_object(holder, ViewerElement, "Custom Elements")
    assert [element.name for _, element in found] == [
        "Object", "Codes file", "Load codes file", "New prior sample",
        "Prompt", "Exemplar image", "Upload exemplar", "Target", "Mode", "Strength",
        "Apply prompt", "Apply exemplar", "Reset", "Last edit",
        "Photo", "Upload photo", "Photo from any camera", "Invert photo", "Inversion",
    ]
    assert found[4][0] == "Custom Elements/edit_object/a_prompt"
    assert holder.edit_object.e_mode.options == ["optimize"]  # a stage-1 run has no mappers
    assert len(parse_object(holder, ViewerControl, "Custom Elements")) == 1  # the camera's start on the orbit
    assert parse_object(model, ViewerElement, "Custom Elements") == []  # the model builds no panel


def test_a_photo_inverted_from_the_panel_joins_the_object_picker(pretrained_runs, tmp_path):
    """The shipped mapper run's panel: its stage-1 run's inversion encoder starts the inversion;
    the inverted chair is picked and shown; bad photos are one line in the panel."""
    import numpy as np

    from clipnerf_ns.app.pretrained import UNSEEN_CHAIR  # deferred: the package's own photo, beside its one use

    _, pipeline = load_run(pretrained_runs.mappers)
    nerf = nerf_of(pipeline)
    inverter = pipeline.invert_photo
    assert inverter.stage1_dir == pretrained_runs.stage1.parent
    before, _ = nerf.display_codes()
    inverter.a_photo.value = str(UNSEEN_CHAIR)
    inverter._on_invert(None)
    assert inverter.e_status.value.startswith("unseen-chair.png inverted (encoder start): PSNR"), inverter.e_status.value
    assert pipeline.choose_object.a_object.value == "photo 1: unseen-chair.png"
    shown, _ = nerf.display_codes()
    assert not torch.equal(shown.z_a, before.z_a)
    assert inverter.inversion_config().frame == "photo"
    inverter.c_any_camera.value = True  # a photo from any camera: cut around the object (clipnerf invert --frame object)
    assert inverter.inversion_config().frame == "object"
    # An uploaded photo whose background is not one colour says so; a path says only that it
    # cannot be used (no oracle of the server's files); an empty field asks for a photo.
    noise = (np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)
    Image.fromarray(noise).save(tmp_path / "busy.png")
    inverter._upload = ("busy.png", (tmp_path / "busy.png").read_bytes())
    for text, fragment in (("(uploaded) busy.png", "background is not plain"), (str(tmp_path / "busy.png"), "cannot use"),
                           ("", "no photo"), (str(tmp_path / "missing.png"), "cannot use")):
        inverter.a_photo.value = text
        inverter._on_invert(None)
        assert inverter.e_status.value.startswith("error:") and fragment in inverter.e_status.value, inverter.e_status.value
    assert pipeline.choose_object.a_object.value == "photo 1: unseen-chair.png"  # refused photos change nothing
