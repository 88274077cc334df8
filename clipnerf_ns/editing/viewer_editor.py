"""The editor in nerfstudio's viewer: prompt, exemplar, target, mode, strength, apply and reset.

nerfstudio puts every `ViewerElement` it finds on the model (descending into submodules) in the
control panel, ordered by attribute name, and re-renders the view after each element's callback.
The editor computes an edit with `Editor.changes`, the function behind `clipnerf edit`, and keeps
the change: moving the strength slider re-scales it without encoding the prompt again.

Edits stack: each one starts from the codes on screen. Reset goes back to the object picked in
the model's object picker, and picking another object forgets the edits.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Optional, TypeVar

import numpy as np
from nerfstudio.viewer.viewer_elements import (
    ViewerButton, ViewerControl, ViewerDropdown, ViewerElement, ViewerSlider, ViewerText,
)
from torch import Tensor, nn
from viser import ViserServer

from clipnerf_ns.editing.edit import TARGETS, Edit, Editor, editor_for, read_exemplar, with_changes
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.clip_nerf import Codes
from clipnerf_ns.validation import Bounds, check_number

STRENGTH_RANGE = (-1.0, 2.0)
UPLOADED = "(uploaded) "
T = TypeVar("T")
MAX_UPLOAD_BYTES = 16 * 2**20
"""Largest exemplar upload (the pixel limit of `data.images` applies too)."""
VIEWER_DIR_VARIABLE = "CLIPNERF_VIEWER_DIR"
"""When set, the panel's path fields (exemplar image, codes file) only read files under this folder."""


class ViewerUpload(ViewerElement):
    """A file upload button (nerfstudio has none); `value` is viser's UploadedFile (name, content)."""

    def __init__(self, name: str, cb_hook: Callable, mime_type: str = "image/*", hint: Optional[str] = None):
        super().__init__(name, cb_hook=cb_hook)
        self.mime_type, self.hint = mime_type, hint

    def _create_gui_handle(self, viser_server: ViserServer) -> None:
        self.gui_handle = viser_server.gui.add_upload_button(self.name, mime_type=self.mime_type, hint=self.hint)

    def install(self, viser_server: ViserServer) -> None:
        self._create_gui_handle(viser_server)
        self.gui_handle.on_upload(lambda _: self.cb_hook(self))

    @property
    def value(self):
        return self.gui_handle.value


class OrbitStart(ViewerControl):
    """Opens each browser's camera on the collections' orbit, looking at the object, z up
    (viser's default camera would start inside our unit box)."""

    def __init__(self, distance: float = 2.2, azimuth_deg: float = 40.0, elevation_deg: float = 25.0):
        self.distance, self.azimuth_deg, self.elevation_deg = distance, azimuth_deg, elevation_deg

    def _setup(self, viewer) -> None:
        super()._setup(viewer)
        viewer.viser_server.on_client_connect(self._place)

    def _place(self, client) -> None:
        from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

        azimuth, elevation = np.radians(self.azimuth_deg), np.radians(self.elevation_deg)
        direction = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
        with client.atomic():
            client.camera.up_direction = (0.0, 0.0, 1.0)
            client.camera.look_at = (0.0, 0.0, 0.0)
            client.camera.position = tuple(direction * self.distance * VISER_NERFSTUDIO_SCALE_RATIO)


def read_panel_path(text: str, what: str, read: Callable[[Path], T]) -> T:
    """`read` of the file a browser names by its path on the server. Whoever reaches the viewer can
    type any path, so the answer never tells a missing file from an unreadable, a foreign or a
    forbidden one (no oracle of the server's files); `read` only accepts its own kind of file, and
    only files under $CLIPNERF_VIEWER_DIR are read when it is set."""
    allowed = os.environ.get(VIEWER_DIR_VARIABLE)
    refused = UserError(f"cannot use {text!r} as {what}" + (f" under {allowed}" if allowed else ""))
    path = Path(text).expanduser()
    if allowed and not path.resolve().is_relative_to(Path(allowed).expanduser().resolve()):
        raise refused
    try:
        return read(path)
    except UserError:
        raise refused from None


def exemplar_from_path(text: str) -> Tensor:
    """The exemplar image a browser names by its path on the server (`read_panel_path`)."""
    return read_panel_path(text, "an exemplar: not a readable image file", read_exemplar)


def exemplar_from_upload(name: str, content: bytes) -> Tensor:
    """An uploaded exemplar image as RGB in [0, 1], read like an exemplar file."""
    if len(content) > MAX_UPLOAD_BYTES:
        raise UserError(f"{name}: the upload is {len(content) / 2**20:.0f} MB; exemplars may be at most "
                        f"{MAX_UPLOAD_BYTES // 2**20} MB")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(content)
        return read_exemplar(path)


class ViewerEditor(nn.Module):
    """The editing panel of a clip-nerf model in the viewer (no parameters; an nn.Module only
    because nerfstudio looks for viewer elements in the model's module tree)."""

    def __init__(self, model):
        super().__init__()
        # A plain reference, hidden from nn.Module and from nerfstudio's element search (leading
        # underscore): as a submodule it would make the module tree cyclic.
        self.__dict__["_model"] = model
        self._make_editor: Callable[[], Editor] = lambda: editor_for(model)  # optimize mode, compact CLIP
        self._editor: Optional[Editor] = None
        self._base: Optional[Codes] = None
        self._changes: dict[str, Tensor] = {}
        self._upload: Optional[Tensor] = None
        # The letters order the elements in the panel: nerfstudio sorts them by attribute name.
        self.a_prompt = ViewerText("Prompt", "", hint="What the object should become, e.g. 'a red chair'")
        self.b_exemplar = ViewerText("Exemplar image", "", hint="Path of an image whose look or shape to copy (or upload one)")
        self.c_upload = ViewerUpload("Upload exemplar", cb_hook=self._on_upload, hint="Upload an exemplar image")
        self.d_target = ViewerDropdown("Target", "both", list(TARGETS), hint="Which code the edit may change")
        self.e_mode = ViewerDropdown(
            "Mode", "optimize", ["optimize"],
            hint="mapper: one pass through the trained mappers; optimize: a few steps of code optimisation",
        )
        self.f_strength = ViewerSlider(
            "Strength", 1.0, *STRENGTH_RANGE, step=0.05, cb_hook=self._on_strength,
            hint="Scale of the last edit's code change (negative: the opposite way)",
        )
        self.g_apply_prompt = ViewerButton("Apply prompt", cb_hook=lambda _: self._apply_from("prompt"))
        self.h_apply_exemplar = ViewerButton("Apply exemplar", cb_hook=lambda _: self._apply_from("exemplar"))
        self.i_reset = ViewerButton("Reset", cb_hook=self._on_reset)
        self.j_status = ViewerText("Last edit", "none yet", disabled=True, hint="Latency and outcome of the last edit")
        self.camera_start = OrbitStart()

    def use_mappers(self, make_editor: Callable[[], Editor]) -> None:
        """Edit with trained mappers (mapper mode becomes the default); call before the viewer starts."""
        self._make_editor, self._editor = make_editor, None
        self.e_mode.options = ["mapper", "optimize"]
        self.e_mode.default_value = "mapper"

    def forget(self) -> None:
        """Drop the last edit (another object was picked)."""
        self._base, self._changes = None, {}

    def editor(self) -> Editor:
        if self._editor is None:
            self._editor = self._make_editor()
        return self._editor

    def edit_from(self, source: str) -> Edit:
        """The Edit the panel describes, from its prompt or its exemplar."""
        common = dict(target=self.d_target.value, mode=self.e_mode.value)
        if source == "prompt":
            return Edit(prompt=self.a_prompt.value, **common)
        path = self.b_exemplar.value.strip()
        if self._upload is not None and path.startswith(UPLOADED):
            return Edit(exemplar=self._upload, **common)
        if not path:
            raise UserError("no exemplar: type an image path or upload one")
        return Edit(exemplar=exemplar_from_path(path), **common)

    def apply(self, edit: Edit) -> float:
        """Apply an edit to the codes on screen and show it at the slider's strength; returns seconds."""
        start = time.perf_counter()
        base, _ = self._model.display_codes()
        changes = self.editor().changes(edit, base)
        seconds = time.perf_counter() - start
        self._base, self._changes = base, changes
        self._show()
        return seconds

    def _show(self) -> None:
        strength = check_number("Strength", self.f_strength.value, Bounds(*STRENGTH_RANGE))
        self._model.set_display(with_changes(self._base, self._changes, float(strength)))

    def _apply_from(self, source: str) -> None:
        self.j_status.value = "editing..."
        try:
            edit = self.edit_from(source)
            seconds = self.apply(edit)
        except UserError as error:
            self.j_status.value = f"error: {error}"
            return
        except Exception as error:  # never leave the panel at "editing...": say so, log the trace
            traceback.print_exc(file=sys.stderr)
            self.j_status.value = f"error: the edit failed ({error.__class__.__name__}; see the viewer's log)"
            return
        what = repr(edit.prompt) if edit.prompt is not None else "exemplar"
        self.j_status.value = f"{edit.mode} {edit.target} edit {what}: {seconds:.2f} s"

    def _on_strength(self, _element) -> None:
        if self._changes:
            try:
                self._show()
            except UserError as error:
                self.j_status.value = f"error: {error}"

    def _on_reset(self, _element) -> None:
        self.forget()
        self._model.show_picked()
        self.j_status.value = "reset"

    def _on_upload(self, element: ViewerUpload) -> None:
        upload = element.value
        try:
            self._upload = exemplar_from_upload(upload.name, upload.content)
        except UserError as error:
            self.j_status.value = f"error: {error}"
            return
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            self.j_status.value = f"error: the upload failed ({error.__class__.__name__}; see the viewer's log)"
            return
        self.b_exemplar.value = UPLOADED + upload.name
        self.j_status.value = f"exemplar {upload.name} uploaded: press Apply exemplar"
