"""Shared fixtures: tiny collections made by the real renderer and writer."""

import functools

import numpy as np
import pytest
import trimesh

from clipnerf_ns.data.build import ObjectJob, ViewPlan, build_collection
from clipnerf_ns.data.render import ColoredMesh

# A small sphere off the centre of the unit box: its projection is easy to predict in every view.
MARKER_CENTER = np.array([0.15, -0.1, 0.2])
MARKER_RADIUS = 0.12


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
