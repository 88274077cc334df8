"""Shared fixtures: tiny collections made by the real renderer and writer."""

import functools

import pytest
import trimesh

from clipnerf_ns.data.build import ObjectJob, ViewPlan, build_collection
from clipnerf_ns.data.render import ColoredMesh
from tests.helpers import MARKER_CENTER, MARKER_RADIUS, run_dir, train


def marker_object(color, seed):
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=MARKER_RADIUS)
    mesh.apply_translation(MARKER_CENTER)
    return ColoredMesh.from_parts([(mesh, color)]), {"color": list(color)}, [f"a sphere of colour {color}"]


@pytest.fixture(scope="session")
def marker_collection(tmp_path_factory):
    """Three sphere 'objects' (the last one held out), 6 training + 3 evaluation views at 48 px."""
    out = tmp_path_factory.mktemp("data") / "markers"
    colors = [(0.9, 0.1, 0.1), (0.1, 0.8, 0.2), (0.1, 0.2, 0.9)]
    jobs = [
        ObjectJob(f"marker_{i}", functools.partial(marker_object, c), seed=i, split="test" if i == 2 else "train")
        for i, c in enumerate(colors)
    ]
    plan = ViewPlan(views=6, eval_views=3, resolution=48, supersample=2)
    return build_collection(out, "markers", jobs, plan, workers=1)


@pytest.fixture(scope="session")
def trained_run(marker_collection, tmp_path_factory):
    """clip-nerf-small trained long enough on the red and green spheres to tell them apart
    (RUN folder: RUN/config.yml, RUN/nerfstudio_models/)."""

    out = tmp_path_factory.mktemp("runs")
    train(marker_collection, out, steps=400, extra=[
        "--pipeline.datamanager.train-num-rays-per-batch", "512",
        "--pipeline.model.num-coarse-samples", "24", "--pipeline.model.num-fine-samples", "12",
        "--pipeline.model.occupancy-warmup-steps", "100",
    ], timeout=900)  # about a minute alone; generous for shared cores
    return run_dir(out)


@pytest.fixture(scope="session")
def marker_prompts(tmp_path_factory):
    """A prompt library for the marker spheres (colour words the compact CLIP knows)."""
    path = tmp_path_factory.mktemp("prompts") / "markers.yaml"
    path.write_text(
        "neutral: a sphere\n"
        "shape: [a big sphere, a small sphere, a tall sphere]\n"
        "appearance: [a red sphere, a green sphere, a blue sphere, a yellow sphere]\n"
    )
    return path


@pytest.fixture(scope="session")
def mapper_run(trained_run, marker_prompts, tmp_path_factory):
    """Mappers trained through `ns-train clip-nerf-mappers` on the trained markers (RUN folder)."""

    out = tmp_path_factory.mktemp("mapper_runs")
    train(None, out, method="clip-nerf-mappers", steps=40, extra=[
        "--pipeline.stage1", str(trained_run / "config.yml"), "--pipeline.model.prompts", str(marker_prompts),
        "--pipeline.model.views-per-step", "2", "--pipeline.model.loss.resolution", "32",
        "--optimizers.mappers.optimizer.lr", "3e-3",
    ], timeout=900)
    return run_dir(out, "clip-nerf-mappers")


@pytest.fixture(scope="session")
def pretrained_runs(tmp_path_factory):
    """The shipped chairs model and mappers as run folders, over their regenerated collection."""
    from clipnerf_ns.app.pretrained import materialize

    return materialize(tmp_path_factory.mktemp("pretrained"), views=2)
