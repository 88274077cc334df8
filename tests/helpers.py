"""Helpers shared by the test modules (test modules import from here, never from each other)."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from clipnerf_ns.fields.conditional_field import FieldSizes

BIN = Path(sys.executable).parent
# Every method, cut down to seconds on the CPU: fewer rays and samples, same architecture.
QUICK = [
    "--machine.device-type", "cpu", "--vis", "tensorboard", "--logging.local-writer.enable", "False",
    "--pipeline.datamanager.train-num-rays-per-batch", "128", "--pipeline.model.eval-num-rays-per-chunk", "1024",
]
# Sample counts of the NeRF; later stages render with their stage-1 run's.
QUICK_NERF = ["--pipeline.model.num-coarse-samples", "8", "--pipeline.model.num-fine-samples", "4"]
# A small sphere off the centre of the unit box: its projection is easy to predict in every view.
MARKER_CENTER = np.array([0.15, -0.1, 0.2])
MARKER_RADIUS = 0.12
TINY_OBJECTS = ["a", "b", "c"]
TINY = FieldSizes(shape_dim=8, appearance_dim=6, deform_layers=2, deform_width=16, trunk_layers=2, trunk_width=16,
                  color_layers=1, color_width=16, backend="torch")
"""Field sizes small enough for hand-sized tests (pure torch)."""


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Silhouette IoU of two (h, w) boolean masks of pictures (`metrics.silhouette_iou` takes
    opacities (h, w, 1): handed a mask it would read its first column only)."""
    import torch

    from clipnerf_ns.eval.metrics import silhouette_iou

    return silhouette_iou(torch.from_numpy(a)[..., None].float(), torch.from_numpy(b)[..., None].float())


def run(*args, check=True, timeout=300):
    """A console script of this environment (clipnerf, ns-train...) as a subprocess."""
    result = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def assert_user_error(result, *fragments, alone=False):
    """Exit 2, our one-line message last on stderr (`alone`: and nothing before it; nerfstudio's
    imports may warn first), no traceback, naming every fragment."""
    assert result.returncode == 2, (result.stdout[-3000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("clipnerf: error:") and (len(lines) == 1 or not alone), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def train(data, out: Path, method: str = "clip-nerf-small", steps: int = 3, extra=(), check=True, timeout=300):
    """ns-train through the real CLI; `data` None: the method finds it (the mapper stage: in its stage-1 run)."""
    return run(
        "ns-train", method, *(["--data", str(data)] if data is not None else []), "--output-dir", str(out), "--experiment-name", "e",
        "--timestamp", "t", "--max-num-iterations", str(steps), "--steps-per-save", str(max(steps - 1, 1)),
        *QUICK, *(QUICK_NERF if method in ("clip-nerf", "clip-nerf-small") else []), *extra,
        check=check, timeout=timeout,
    )


def run_dir(out: Path, method: str = "clip-nerf-small") -> Path:
    return out / "e" / method / "t"


def make_model(attributes=None, **overrides):
    """A tiny untrained ClipNerfModel over TINY_OBJECTS in the unit box (`attributes`: one dict per
    object, as the collection dataparser passes them)."""
    import torch
    from nerfstudio.data.scene_box import SceneBox

    from clipnerf_ns.models.clip_nerf import ClipNerfModelConfig

    torch.manual_seed(0)
    config = ClipNerfModelConfig(**{"field": TINY, "num_coarse_samples": 12, "num_fine_samples": 6, **overrides})
    box = SceneBox(aabb=torch.tensor([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]))
    metadata = {"object_ids": TINY_OBJECTS, **({"attributes": attributes} if attributes is not None else {})}
    return config.setup(scene_box=box, num_train_data=6, metadata=metadata)


def clipnerf_in_process(capsys, *args) -> tuple[int, str]:
    """Run `clipnerf ARGS` through its real entry point in this process (a subprocess spends
    seconds importing torch and nerfstudio); returns its exit code (0 when it returns) and stderr."""
    from clipnerf_ns.cli import entrypoint

    try:
        entrypoint([str(a) for a in args])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    """The only line of `err`; fails if there are more or a traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def write_labelled_chair(folder: Path, tilt_deg: float = 20.0) -> Path:
    """A PartNet-style chair folder built from boxes (y-up part OBJs, front towards +z, and a
    result.json naming its seat, back and four legs), of known sizes in the chairs' world frame:
    seat top 0.45 above the floor, seat 0.4 deep and 0.5 wide, legs 0.04 thick, back top at 1.0,
    the back reclined by `tilt_deg`. Its height is its binding extent, so the world scale is 1."""
    import json

    import trimesh

    def part(name: str, lo, hi, shear_deg: float = 0.0) -> None:
        mesh = trimesh.creation.box(bounds=[lo, hi])
        if shear_deg:
            v = mesh.vertices.copy()
            v[:, 0] -= np.tan(np.radians(shear_deg)) * (v[:, 2] - lo[2])  # the top leans back, towards -x
            mesh = trimesh.Trimesh(v, mesh.faces, process=False)
        world = np.asarray(mesh.vertices)
        file_frame = world[:, [1, 2, 0]]  # world (x, y, z) -> file (y, z, x): file +y up, +z front
        trimesh.Trimesh(file_frame, mesh.faces, process=False).export(folder / f"{name}.obj")

    folder.mkdir(parents=True)
    part("seat", [-0.2, -0.25, 0.42], [0.2, 0.25, 0.45])
    part("back", [-0.2, -0.22, 0.45], [-0.17, 0.22, 1.0], tilt_deg)
    corners = [(0.16, 0.21), (-0.16, 0.21), (-0.16, -0.21), (0.16, -0.21)]
    for i, (x, y) in enumerate(corners):
        part(f"leg{i}", [x - 0.02, y - 0.02, 0.0], [x + 0.02, y + 0.02, 0.43])
    tree = [{"name": "chair", "children": [
        {"name": "chair_seat", "children": [{"name": "seat_surface", "objs": ["seat"]}]},
        {"name": "chair_back", "children": [{"name": "back_surface", "children": [
            {"name": "back_hard_surface", "objs": ["back"]}]}]},
        {"name": "chair_base", "children": [{"name": "regular_leg_base", "children": [
            {"name": "leg", "objs": [f"leg{i}"]} for i in range(4)]}]},
    ]}]
    (folder / "result.json").write_text(json.dumps(tree))
    (folder / "meta.json").write_text(json.dumps({"model_id": "box-chair", "model_cat": "Chair"}))
    return folder
