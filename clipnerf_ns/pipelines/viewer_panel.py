"""The clip-nerf panel of nerfstudio's viewer: an object picker, the editor (prompt, exemplar,
target, mode, strength, apply and reset) and a photo inverter, attached to a pipeline by
`attach_viewer_panel`.

nerfstudio puts every `ViewerElement` it finds on the pipeline (descending into submodules) in the
control panel, ordered by attribute name, and re-renders the view after each element's callback.
The editor computes an edit with `Editor.changes`, the function behind `clipnerf edit`, and keeps
the change: moving the strength slider re-scales it without encoding the prompt again.

Edits stack: each one starts from the codes on screen. Reset goes back to the object picked in
the object picker, and picking another object forgets the edits.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Optional, TypeVar

import torch
from nerfstudio.viewer.viewer_elements import (
    ViewerButton,
    ViewerCheckbox,
    ViewerControl,
    ViewerDropdown,
    ViewerElement,
    ViewerSlider,
    ViewerText,
)
from torch import Tensor, nn
from viser import ViserServer

from clipnerf_ns.codes import Codes, model_fingerprint
from clipnerf_ns.data.cameras import VIEW_DEG, Orbit, orbit_pose
from clipnerf_ns.data.photos import Photo, read_photo
from clipnerf_ns.editing.edit import TARGETS, Edit, Editor, read_exemplar, with_changes
from clipnerf_ns.editing.inversion_encoder import run_encoder
from clipnerf_ns.editing.invert import run_inversion, start_inversion
from clipnerf_ns.editing.invert_config import InversionConfig
from clipnerf_ns.errors import UserError
from clipnerf_ns.models.clip_nerf import ClipNerfModel
from clipnerf_ns.validation import Bounds, check_number

STRENGTH_RANGE = (-1.0, 2.0)
UPLOADED = "(uploaded) "
PRIOR_SAMPLE = "sample from the code prior"
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
    """Opens each browser's camera on the collection's orbit, looking at the object, z up
    (viser's default camera would start inside our unit box)."""

    def __init__(self, orbit: Orbit):
        self.distance, (self.azimuth_deg, self.elevation_deg) = orbit.distance, VIEW_DEG

    def _setup(self, viewer) -> None:
        super()._setup(viewer)
        viewer.viser_server.on_client_connect(self._place)

    def _place(self, client) -> None:
        from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

        eye = orbit_pose(self.distance * VISER_NERFSTUDIO_SCALE_RATIO, self.azimuth_deg, self.elevation_deg)[:3, 3]
        with client.atomic():
            client.camera.up_direction = (0.0, 0.0, 1.0)
            client.camera.look_at = (0.0, 0.0, 0.0)
            client.camera.position = tuple(eye)


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


class ObjectPicker(nn.Module):
    """The object the viewer shows and edits: a training object, a draw from the code prior, or a
    loaded codes file (no parameters; an nn.Module because nerfstudio looks for viewer elements in
    the pipeline's module tree)."""

    def __init__(self, model: ClipNerfModel):
        super().__init__()
        self.__dict__["_model"] = model  # a plain reference: as a submodule it would be saved twice
        self.__dict__["_listeners"] = []
        self._codes_files: dict[str, Codes] = {}
        self._draws = 0
        self.report: Callable[[str], None] = lambda message: None
        ids = model.object_ids
        self.a_object = ViewerDropdown(
            "Object", ids[model.config.render_object], ids + [PRIOR_SAMPLE], cb_hook=self._on_choose,
            hint="Training object to show, a draw from the code prior, or a loaded codes file",
        )
        self.b_codes_file = ViewerText(
            "Codes file", "", hint="A codes.safetensors from clipnerf invert or clipnerf edit, to add to the objects"
        )
        self.c_load_codes = ViewerButton("Load codes file", cb_hook=self._on_load_codes_file)
        self.d_new_sample = ViewerButton("New prior sample", cb_hook=self._on_new_sample)

    def on_pick(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever another object is picked."""
        self._listeners.append(listener)

    def pick(self, target) -> None:
        self._model.pick(target)
        for listener in self._listeners:
            listener()

    def add_codes_file(self, path: Path) -> str:
        """Load a codes file (checked against the model's weights) into the picker and pick it."""
        return self.add_codes(f"codes: {path}", self._model.read_codes_file(path))

    def add_codes(self, name: str, codes: Codes) -> str:
        """Add codes to the picker under `name` and pick them."""
        self._codes_files[name] = codes
        self.a_object.set_options(self._model.object_ids + [PRIOR_SAMPLE] + list(self._codes_files))
        self.pick(codes)
        self.a_object.value = name
        return name

    def _on_choose(self, element: ViewerDropdown) -> None:
        if element.value == PRIOR_SAMPLE:
            self._on_new_sample(None)
        elif element.value in self._codes_files:
            self.pick(self._codes_files[element.value])
        else:
            self.pick(self._model.object_ids.index(element.value))

    def _on_new_sample(self, _element) -> None:
        self._draws += 1
        drawn = self._model.sample_prior(1, torch.Generator().manual_seed(self._draws))
        self.pick(Codes(drawn.z_s[0], drawn.z_a[0]))

    def _on_load_codes_file(self, _element) -> None:
        text = self.b_codes_file.value.strip()
        try:
            read_panel_path(text, "a codes file: not a readable codes file of this model", self.add_codes_file)
        except UserError as error:
            self.report(f"error: {error}")


class ViewerEditor(nn.Module):
    """The editing panel (no parameters; an nn.Module for nerfstudio's element search)."""

    def __init__(self, model: ClipNerfModel, picker: ObjectPicker, make_editor: Callable[[], Editor],
                 modes: tuple[str, ...] = ("optimize",)):
        super().__init__()
        # A plain reference, hidden from nn.Module and from nerfstudio's element search (leading
        # underscore): as a submodule it would make the module tree cyclic.
        self.__dict__["_model"] = model
        self._make_editor = make_editor
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
            "Mode", modes[0], list(modes),
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
        self.camera_start = OrbitStart(model.orbit)
        picker.on_pick(self.forget)
        picker.report = self._report

    def _report(self, message: str) -> None:
        self.j_status.value = message

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


class PhotoInverter(nn.Module):
    """Invert a photo in the viewer (`clipnerf invert`'s work): a path on the server or an upload,
    masked as the command masks it; the inverted object joins the object picker and is shown,
    ready for prompts. Starts from the stage-1 run's inversion encoder when it has one (a few
    seconds), else from the coarse search (no parameters; an nn.Module for nerfstudio's search)."""

    def __init__(self, model: ClipNerfModel, picker: ObjectPicker, stage1_dir: Optional[Path] = None):
        super().__init__()
        self.__dict__["_model"] = model
        self.__dict__["_picker"] = picker
        self.stage1_dir = stage1_dir
        """Folder of the stage-1 run's config.yml, where its encoder lies (set when ns-viewer starts)."""
        self._upload: Optional[tuple[str, bytes]] = None
        self._inverted = 0
        self.a_photo = ViewerText("Photo", "", hint="Path of a photo of one object on a plain or transparent background (or upload one)")
        self.b_upload = ViewerUpload("Upload photo", cb_hook=self._on_upload, hint="Upload a photo to invert")
        self.c_any_camera = ViewerCheckbox("Photo from any camera", False,
                                           hint="Cut around the object and find the camera's distance, roll and aim "
                                                "(clipnerf invert --frame object): for photos not taken as the run's views are")
        self.d_invert = ViewerButton("Invert photo", cb_hook=self._on_invert)
        self.e_status = ViewerText("Inversion", "none yet", disabled=True, hint="Progress and outcome of the last inversion")

    def inversion_config(self) -> InversionConfig:
        """The viewer's inversion: a random quarter of the pixels per step and no extension, half
        the time for 0.4 dB (the shipped chairs model, its unseen chair: 22.5 dB in 6.0 s against
        22.9 dB in 12.1 s); framed on the object for a photo from any camera."""
        return InversionConfig(rays_per_step=1024, encoder_extend_below=0.0, frame="object" if self.c_any_camera.value else "photo")

    def invert(self, read: Callable[[], Photo], name: str) -> str:
        """Invert the photo `read` gives, add it to the picker as `name` and show it; returns a summary."""
        start = time.perf_counter()
        photo = read()
        model, config = self._model, self.inversion_config()
        encoder = run_encoder(self.stage1_dir / "config.yml", model_fingerprint(model.field), "auto") if self.stage1_dir else None
        self.e_status.value = f"inverting {name}: finding the camera ({'encoder' if encoder else 'coarse search'})..."
        with torch.enable_grad():
            inversion = start_inversion(model, photo, config, encoder=encoder)

            def show(step: int, psnr: float) -> None:
                steps = inversion.planned_steps
                if step % 10 == 9 or step == steps - 1:
                    self.e_status.value = f"inverting {name}: step {step + 1}/{steps}, PSNR {psnr:.1f} dB"

            run_inversion(inversion, progress=False, on_step=show)
        self._inverted += 1
        self._picker.add_codes(f"photo {self._inverted}: {name}", inversion.result_codes())
        return f"{name} inverted ({inversion.start} start): PSNR {inversion.psnr():.1f} dB, {time.perf_counter() - start:.1f} s"

    def _on_invert(self, _element) -> None:
        text = self.a_photo.value.strip()
        try:
            if self._upload is not None and text == UPLOADED + self._upload[0]:
                name, content = self._upload
                self.e_status.value = self.invert(lambda: photo_from_upload(name, content), name)
            elif text:
                self.e_status.value = self.invert(lambda: read_panel_path(text, "a photo: not a readable image file", read_photo),
                                                  Path(text).name)
            else:
                self.e_status.value = "error: no photo: type an image path or upload one"
        except UserError as error:
            self.e_status.value = f"error: {error}"
        except Exception as error:  # never leave the panel at "inverting...": say so, log the trace
            traceback.print_exc(file=sys.stderr)
            self.e_status.value = f"error: the inversion failed ({error.__class__.__name__}; see the viewer's log)"

    def _on_upload(self, element: ViewerUpload) -> None:
        upload = element.value
        if len(upload.content) > MAX_UPLOAD_BYTES:
            self.e_status.value = f"error: {upload.name}: photos may be at most {MAX_UPLOAD_BYTES // 2**20} MB"
            return
        self._upload = (upload.name, upload.content)
        self.a_photo.value = UPLOADED + upload.name
        self.e_status.value = f"photo {upload.name} uploaded: press Invert photo"


def photo_from_upload(name: str, content: bytes) -> Photo:
    """An uploaded photo, read (and masked) like a photo file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(content)
        return read_photo(path)


def attach_viewer_panel(pipeline: nn.Module, model: ClipNerfModel, make_editor: Callable[[], Editor],
                        modes: tuple[str, ...], stage1_dir: Optional[Path] = None) -> None:
    """Put the object picker, the editor and the photo inverter of `model` in `pipeline`'s viewer
    panel; `modes` are the editor's modes, the default first; `stage1_dir` the stage-1 run's folder
    (its inversion encoder), when known. The attribute names order them: picker, editor, inverter."""
    pipeline.choose_object = ObjectPicker(model)
    pipeline.edit_object = ViewerEditor(model, pipeline.choose_object, make_editor, modes)
    pipeline.invert_photo = PhotoInverter(model, pipeline.choose_object, stage1_dir)
