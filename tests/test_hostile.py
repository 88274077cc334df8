"""The hostile or careless user: planted code in weights, configs and checkpoints, bombs and
truncated files, NaN and huge numbers, concurrent writers. Each case must end in one line (exit 2
from the CLI), with nothing written and nothing executed."""

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

from clipnerf_ns.errors import UserError
from tests.helpers import clipnerf_in_process as clipnerf
from tests.helpers import one_line


class RunsCode:
    """A pickled object whose unpickling creates `marker` (what a malicious checkpoint does)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def planted_yaml(marker: Path) -> str:
    return f"!!python/object/apply:os.system ['touch {marker}']\n"


def copy_run(run: Path, out: Path) -> Path:
    """A copy of a run folder whose config points at the copy (ns-* find checkpoints through it)."""
    from clipnerf_ns.pipelines.runs import read_run_config

    config = read_run_config(run / "config.yml")
    config.output_dir, config.experiment_name, config.timestamp = out, "copy", "t"
    base = config.get_base_dir()
    shutil.copytree(run / config.relative_model_dir, base / config.relative_model_dir)
    (base / "config.yml").write_text(yaml.dump(config))
    return base


# ------------------------------------------------------------------ 1. weights files that run code


def test_a_weights_file_whose_config_runs_code_is_refused(tmp_path, monkeypatch):
    import clipnerf_ns.app.pretrained as pretrained

    marker = tmp_path / "ran"
    planted = tmp_path / "chairs-small.safetensors"
    metadata = {"config": planted_yaml(marker), "collection": "{}", "object_ids": "[]", "step": "1"}
    save_file({"x": torch.zeros(1)}, str(planted), metadata=metadata)
    monkeypatch.setattr(pretrained, "CHAIRS_SMALL", planted)
    with pytest.raises(UserError, match="unsafe or foreign config"):
        pretrained.materialize(tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_run_config_that_runs_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "ran"
    run = tmp_path / "run"
    (run / "nerfstudio_models").mkdir(parents=True)
    (run / "config.yml").write_text(planted_yaml(marker))
    code, err = clipnerf(capsys, "edit", "--load-config", run / "config.yml", "--object", "0", "--prompt", "a red chair",
                         "--output-dir", tmp_path / "out")
    assert code == 2 and "unsafe or foreign config" in one_line(err)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_the_safe_loader_reads_real_run_configs_exactly(trained_run, mapper_run):
    from clipnerf_ns.config_yaml import load_config_yaml

    for run in (trained_run, mapper_run):
        text = (run / "config.yml").read_text()
        assert load_config_yaml(text, "x") == yaml.load(text, Loader=yaml.Loader)


def test_configs_naming_classes_from_before_they_moved_still_load(mapper_run):
    """A mapper run written before MapperModelConfig moved to editing/ and the method configs to
    app/methods (the shipped weights files carry such configs) loads as the same config."""
    from clipnerf_ns.config_yaml import load_config_yaml
    from clipnerf_ns.editing.mapper_model import MapperModelConfig

    text = (mapper_run / "config.yml").read_text()
    old = text.replace("clipnerf_ns.editing.mapper_model.MapperModel", "clipnerf_ns.pipelines.mapper_pipeline.MapperModel")
    old = old.replace("clipnerf_ns.app.methods.", "clipnerf_ns.config.")
    assert old != text and "clipnerf_ns.pipelines.mapper_pipeline.MapperModelConfig" in old
    config = load_config_yaml(old, "old run")
    assert isinstance(config.pipeline.model, MapperModelConfig) and config == load_config_yaml(text, "new run")


# ------------------------------------------------------------- 2. checkpoints that run code or are cut


def test_a_pickled_checkpoint_is_refused_by_nerfstudios_eval_setup_even_with_torchs_unsafe_default(
        trained_run, tmp_path, monkeypatch, capsys):
    """eval_setup is what ns-eval, ns-render, ns-viewer and ns-export load runs with."""
    from nerfstudio.utils.eval_utils import eval_setup

    base = copy_run(trained_run, tmp_path / "runs")
    marker = tmp_path / "ran"
    (checkpoint,) = (base / "nerfstudio_models").glob("step-*.ckpt")
    torch.save({"step": 1, "pipeline": RunsCode(marker)}, checkpoint)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(SystemExit) as exit_info:
        eval_setup(base / "config.yml", test_mode="inference")
    assert exit_info.value.code == 2 and not marker.exists()
    assert "refused: this checkpoint holds Python objects" in capsys.readouterr().err


def test_a_pickled_checkpoint_is_refused_when_resuming_training(trained_run, tmp_path, monkeypatch, capsys):
    from clipnerf_ns.pipelines.runs import read_run_config

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "ran"
    planted = tmp_path / "step-000000001.ckpt"
    torch.save({"step": 1, "pipeline": RunsCode(marker)}, planted)
    config = read_run_config(trained_run / "config.yml")
    config.load_checkpoint, config.output_dir, config.vis = planted, tmp_path / "resume", "tensorboard"
    config.machine.device_type = "cpu"
    trainer = config.setup(local_rank=0, world_size=1)
    with pytest.raises(SystemExit) as exit_info:
        trainer.setup()
    assert exit_info.value.code == 2 and not marker.exists()
    assert "refused: this checkpoint holds Python objects" in capsys.readouterr().err


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(trained_run, tmp_path, capsys):
    from clipnerf_ns.pipelines.runs import load_run

    base = copy_run(trained_run, tmp_path / "runs")
    (good,) = (base / "nerfstudio_models").glob("step-*.ckpt")
    newer = good.with_name("step-999999999.ckpt")
    newer.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a kill in the middle of a save
    _, pipeline = load_run(base / "config.yml")
    assert pipeline.model is not None
    assert "step-999999999.ckpt: unreadable checkpoint" in capsys.readouterr().err
    good.unlink()  # only the cut one left: one line, no fallback
    with pytest.raises(SystemExit) as exit_info:
        load_run(base / "config.yml")
    assert exit_info.value.code == 2 and "unreadable checkpoint, truncated" in one_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------ 3. the viewer


def test_the_viewer_binds_to_loopback_unless_told_otherwise(monkeypatch, capsys):
    from clipnerf_ns.pipelines.nerfstudio_hooks import VIEWER_HOST_VARIABLE, viewer_host

    monkeypatch.delenv(VIEWER_HOST_VARIABLE, raising=False)
    assert viewer_host("0.0.0.0") == "127.0.0.1"  # nerfstudio's default
    assert f"set {VIEWER_HOST_VARIABLE}=0.0.0.0" in capsys.readouterr().err
    monkeypatch.setenv(VIEWER_HOST_VARIABLE, "0.0.0.0")
    assert viewer_host("0.0.0.0") == "0.0.0.0"
    assert "warning: the viewer and its editor panel are open to every host" in capsys.readouterr().err


def test_the_exemplar_path_field_is_no_oracle_and_reads_only_images(tmp_path, monkeypatch):
    from clipnerf_ns.pipelines.viewer_panel import VIEWER_DIR_VARIABLE, exemplar_from_path

    monkeypatch.delenv(VIEWER_DIR_VARIABLE, raising=False)
    text_file = tmp_path / "secret.txt"
    text_file.write_text("password")
    image = tmp_path / "ok.png"
    Image.new("RGB", (32, 32), "red").save(image)
    messages = set()
    for path in (tmp_path / "missing.png", text_file, tmp_path, "/dev/zero"):
        with pytest.raises(UserError) as error:
            exemplar_from_path(str(path))
        messages.add(str(error.value).replace(repr(str(path)), "PATH"))
    assert messages == {"cannot use PATH as an exemplar: not a readable image file"}
    assert exemplar_from_path(str(image)).shape[-1] == 3
    monkeypatch.setenv(VIEWER_DIR_VARIABLE, str(tmp_path / "allowed"))
    with pytest.raises(UserError, match="not a readable image file under"):
        exemplar_from_path(str(image))  # exists, but outside the allowed folder


def bomb(path: Path, side: int = 9000) -> Path:
    """A small PNG that decodes to side x side pixels."""
    Image.new("L", (side, side)).save(path, optimize=True)
    return path


def test_uploads_and_images_have_size_and_pixel_limits(tmp_path):
    from clipnerf_ns.pipelines.viewer_panel import MAX_UPLOAD_BYTES, exemplar_from_upload

    content = bomb(tmp_path / "bomb.png").read_bytes()
    assert len(content) < 200_000
    start = time.perf_counter()
    with pytest.raises(UserError, match="9000 x 9000 pixels; at most 16.8 million"):
        exemplar_from_upload("bomb.png", content)
    assert time.perf_counter() - start < 1.0  # refused from the header, nothing decoded
    with pytest.raises(UserError, match="exemplars may be at most 16 MB"):
        exemplar_from_upload("big.png", b"\0" * (MAX_UPLOAD_BYTES + 1))


# ------------------------------------------------------------------ 4. non-finite and huge numbers


EDIT = ["edit", "--load-config", "x.yml", "--object", "0", "--prompt", "a red chair"]


@pytest.mark.parametrize("args, message", [
    ([*EDIT, "--strength", "nan"], "--strength must be a finite number"),
    ([*EDIT, "--strength", "inf"], "--strength must be a finite number"),
    ([*EDIT, "--strength", "1e9"], "--strength must be between -10 and 10"),
    ([*EDIT, "--resolution", "100000"], "--resolution must be between 8 and 2048"),
    (["interpolate", "--load-config", "x.yml", "--objects", "0", "1", "--resolution", "100000"], "--resolution must be between 8 and 2048"),
    (["invert", "--load-config", "x.yml", "--image", "x.png", "--distance", "nan"], "--distance must be a finite number"),
    (["turntable", "--distance", "0"], "--distance must be between 0.01 and 100"),
    (["turntable", "--elevation", "nan"], "--elevation must be a finite number"),
    (["eval", "--load-config", "x.yml", "--prior-objects", "-1"], "--prior-objects must be between 0 and 1000"),
])
def test_bad_numbers_stop_with_one_line_before_any_work(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = ["--output-dir", str(tmp_path / "out")] if args[0] in ("edit", "invert", "eval") else \
        ["--output", str(tmp_path / "out")]
    code, err = clipnerf(capsys, *args, *out)
    assert code == 2 and message in one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_codes_files_with_nan_or_foreign_info_are_refused_by_name(tmp_path):
    from clipnerf_ns.codes import FORMAT, read_codes_file

    nan_codes = tmp_path / "nan.safetensors"
    save_file({"z_s": torch.full((4,), float("nan")), "z_a": torch.zeros(4)}, str(nan_codes),
              metadata={"format": FORMAT, "model": "x", "info": "{}"})
    with pytest.raises(UserError, match=r"nan.safetensors: its 'z_s' holds non-finite values"):
        read_codes_file(nan_codes)
    bad_info = tmp_path / "info.safetensors"
    save_file({"z_s": torch.zeros(4), "z_a": torch.zeros(4)}, str(bad_info),
              metadata={"format": FORMAT, "model": "x", "info": "{not json"})
    with pytest.raises(UserError, match=r"info.safetensors: its 'info' metadata is not JSON"):
        read_codes_file(bad_info)


# ---------------------------------------------------------- 5. tracebacks that become one line


def small_collection(marker_collection: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(marker_collection, copy)
    return copy


def test_a_truncated_png_inside_a_collection_is_one_line(marker_collection, tmp_path):
    from clipnerf_ns.data.collection import read_collection

    data = small_collection(marker_collection, tmp_path)
    image = data / "marker_0" / "images" / "003.png"
    image.write_bytes(image.read_bytes()[:-40])
    with pytest.raises(UserError, match=r"003.png: not a readable image"):
        read_collection(data)


@pytest.mark.parametrize("change, message", [
    (lambda doc: doc["frames"][0].update(transform_matrix=[[1, 0, 0], [0, 1], [0, 0, 1, 0]]), "pose must be a 4x4 matrix of numbers"),
    (lambda doc: doc["frames"][0].update(transform_matrix=[["a"] * 4] * 4), "pose must be a 4x4 matrix of numbers"),
])
def test_malformed_transforms_are_one_line(change, message, marker_collection, tmp_path):
    from clipnerf_ns.data.collection import read_collection

    data = small_collection(marker_collection, tmp_path)
    path = data / "marker_0" / "transforms.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match=message):
        read_collection(data)


@pytest.mark.parametrize("change, message", [
    (lambda doc: doc.update(scene_box="big"), "'scene_box' must be"),
    (lambda doc: doc.update(scene_box=[[0, 0], [1, 1, 1]]), "'scene_box' must be"),
    (lambda doc: doc["objects"][0].update(captions="a red sphere"), "'captions' must be a list of strings"),
    (lambda doc: doc["objects"][0].update(attributes=["red"]), "'attributes' must be an object"),
])
def test_malformed_collection_json_is_one_line(change, message, marker_collection, tmp_path):
    from clipnerf_ns.data.collection import read_collection

    data = small_collection(marker_collection, tmp_path)
    path = data / "collection.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match=message):
        read_collection(data)


def test_bombs_as_exemplar_or_photo_are_one_line(tmp_path, capsys):
    image = bomb(tmp_path / "bomb.png")
    for args in (["edit", "--load-config", "x.yml", "--object", "0", "--exemplar", image],
                 ["invert", "--load-config", "x.yml", "--image", image]):
        code, err = clipnerf(capsys, *args, "--output-dir", tmp_path / "out")
        assert code == 2 and "bomb.png: the" in one_line(err) and "is 9000 x 9000 pixels" in err
    from clipnerf_ns.data.images import read_rgba

    with pytest.raises(UserError, match="9000 x 9000 pixels"):
        read_rgba(image, "image to invert")
    assert not (tmp_path / "out").exists()


def _hold_lock(target: str, ready, release) -> None:
    from clipnerf_ns.atomic import output_lock

    with output_lock(Path(target)):
        ready.set()
        release.wait(30)


def test_a_second_writer_to_the_same_folder_stops_and_loses_nothing(tmp_path):
    from clipnerf_ns.atomic import atomic_output_dir

    out = tmp_path / "edit"
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(out), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(UserError, match=rf"another clipnerf process \(pid {holder.pid}\) is writing here"):
            with atomic_output_dir(out, overwrite=True) as tmp:
                (tmp / "result.txt").write_text("second")
    finally:
        release.set()
        holder.join(30)
    assert not out.exists() and not list(tmp_path.glob(".edit.partial-*"))
    with atomic_output_dir(out, overwrite=True) as tmp:  # the holder is gone: the folder is free again
        (tmp / "result.txt").write_text("first")
    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "result.txt").write_text("replaced")
    assert (out / "result.txt").read_text() == "replaced" and not list(tmp_path.glob(".edit.*-*"))


def test_an_output_folder_may_be_several_new_folders_deep(tmp_path):
    from clipnerf_ns.atomic import atomic_output_dir

    with atomic_output_dir(tmp_path / "runs" / "demo" / "chairs") as tmp:  # as `materialize("runs/demo")` asks
        (tmp / "collection.json").write_text("{}")
    assert (tmp_path / "runs" / "demo" / "chairs" / "collection.json").read_text() == "{}"
    assert not list((tmp_path / "runs" / "demo").glob(".chairs.*"))


def test_a_killed_runs_partial_folder_is_removed_by_the_next_run(tmp_path):
    from clipnerf_ns.atomic import atomic_output_dir

    out = tmp_path / "chairs"
    # A process that dies (SIGKILL) in the middle of writing: its partial folder stays behind.
    child = subprocess.Popen([sys.executable, "-c", (
        "import os, pathlib, signal; p = pathlib.Path(%r) / f'.chairs.partial-{os.getpid()}'; "
        "p.mkdir(); (p / 'half.png').write_bytes(b'x'); os.kill(os.getpid(), signal.SIGKILL)") % str(tmp_path)])
    child.wait(30)
    assert child.returncode == -9 and len(list(tmp_path.glob(".chairs.partial-*"))) == 1
    with atomic_output_dir(out) as tmp:
        (tmp / "collection.json").write_text("{}")
    assert not list(tmp_path.glob(".chairs.partial-*")) and (out / "collection.json").exists()


def test_weights_files_are_written_whole_and_readable_by_all(tmp_path):
    """Every safetensors file the package writes (weights, codes, packs) goes through one helper:
    a failure leaves the old file and no partial; the new file is an ordinary 0644 data file."""
    import torch
    from safetensors.torch import load_file

    from clipnerf_ns.atomic import save_safetensors

    path = save_safetensors({"w": torch.ones(3)}, {"format": "test"}, tmp_path / "deep" / "w.safetensors")
    assert oct(path.stat().st_mode & 0o777) == "0o644" and torch.equal(load_file(path)["w"], torch.ones(3))
    shared = torch.zeros(4)
    with pytest.raises(RuntimeError, match="share memory"):  # safetensors refuses, inside the write
        save_safetensors({"a": shared, "b": shared}, {"format": "test"}, path)
    assert torch.equal(load_file(path)["w"], torch.ones(3)) and [p.name for p in path.parent.iterdir()] == ["w.safetensors"]
