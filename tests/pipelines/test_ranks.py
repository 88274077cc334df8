"""Training on two ranks (torch DDP over gloo, two CPU processes) through nerfstudio's own Trainer:
both ranks end with identical weights, code tables and occupancy grids, draw different rays, only
rank 0 saves, the loss follows a one-process run with the same total batch, and the two-rank
checkpoint resumes in one process. (nerfstudio's launcher asserts CUDA, so the two processes are
started here the way it starts them: one process group, then its `train_loop` body.)"""

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from tests.helpers import QUICK, QUICK_NERF

STEPS = 120
RAYS = 128


def quick_config(method: str, out: Path, steps: int, extra: tuple):
    """`method` as `ns-train` would build it with the tests' quick settings."""
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    args = [method, "--output-dir", str(out), "--experiment-name", "e", "--timestamp", "t",
            "--max-num-iterations", str(steps), "--steps-per-save", str(steps), "--steps-per-eval-batch", str(10 * steps),
            "--steps-per-eval-image", str(10 * steps), *QUICK, *extra]
    config = tyro.cli(AnnotatedBaseConfigUnion, args=args)  # ns-train's own parser
    if config.data:
        config.pipeline.datamanager.data = config.data  # what ns-train's main does with --data
    return config


def nerf_options(data: Path, rays: int, extra: tuple = ()) -> tuple:
    return ("--data", str(data), *QUICK_NERF, "--pipeline.datamanager.train-num-rays-per-batch", str(rays),
            "--pipeline.model.occupancy-warmup-steps", "40", *extra)


def train_rank(rank: int, world_size: int, port: int, method: str, out: str, steps: int, extra: tuple) -> None:
    """One rank: the process group nerfstudio's launcher makes, then its train_loop, observed."""
    import torch.distributed as dist
    from nerfstudio.scripts.train import _set_random_seed
    from nerfstudio.utils import comms

    torch.set_num_threads(1)
    if world_size > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
        comms.LOCAL_PROCESS_GROUP = dist.new_group(list(range(world_size)))
    config = quick_config(method, Path(out), steps, extra)
    _set_random_seed(config.machine.seed + rank)
    trainer = config.setup(local_rank=rank, world_size=world_size)
    trainer.setup()
    losses, first_rays = [], []
    original = trainer.train_iteration

    def observed(step: int):
        loss, loss_dict, metrics = original(step)
        losses.append(float(loss))
        return loss, loss_dict, metrics

    original_next = trainer.pipeline.datamanager.next_train

    def next_train(step: int):
        rays_, batch = original_next(step)
        if not first_rays:
            first_rays.append(batch["indices"][:8].tolist())
        return rays_, batch

    trainer.train_iteration = observed
    if method != "clip-nerf-mappers":  # the mapper stage draws codes, not rays
        trainer.pipeline.datamanager.next_train = next_train
    trainer.train()
    state = {k: v.detach().cpu() for k, v in trainer.pipeline.model.state_dict().items()}
    torch.save(state, Path(out) / f"rank{rank}.pt")
    (Path(out) / f"rank{rank}.json").write_text(json.dumps({"losses": losses, "first_rays": first_rays[:1], "start": trainer._start_step}))
    if world_size > 1:
        comms.synchronize()
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(world_size: int, out: Path, extra: tuple, steps: int = STEPS, method: str = "clip-nerf-small") -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    quick_config(method, out, steps, extra).save_config()  # as ns-train does before it starts the ranks (its folder too)
    mp.start_processes(train_rank, args=(world_size, free_port(), method, str(out), steps, extra), nprocs=world_size,
                       start_method="spawn")
    return [{**json.loads((out / f"rank{r}.json").read_text()), "state": torch.load(out / f"rank{r}.pt")} for r in range(world_size)]


@pytest.mark.slow  # 50 s; keeps make test within 15 min (test_two_ranks_train_the_mappers_alike_from_different_draws runs two ranks there)
def test_two_ranks_train_as_one_with_the_same_total_batch(marker_collection, tmp_path):
    two = run_ranks(2, tmp_path / "two", nerf_options(marker_collection, RAYS))
    assert two[0]["first_rays"] != two[1]["first_rays"]  # seeded by rank: different rays
    for key, value in two[0]["state"].items():  # fields, code tables, occupancy grids
        assert torch.equal(value, two[1]["state"][key]), key
    assert two[0]["state"]["occupancy_refreshes"].sum() > 0  # the grids were refreshed, not just initial
    checkpoints = list((tmp_path / "two" / "e" / "clip-nerf-small" / "t" / "nerfstudio_models").glob("step-*.ckpt"))
    assert len(checkpoints) == 1  # saved once, by rank 0
    saved = torch.load(checkpoints[0], weights_only=True)["pipeline"]
    assert not any(".module." in key for key in saved)  # the same keys as a one-process run
    one = run_ranks(1, tmp_path / "one", nerf_options(marker_collection, 2 * RAYS))
    mean_two = np.mean([np.mean(r["losses"][-40:]) for r in two])
    mean_one = np.mean(one[0]["losses"][-40:])
    print(f"mean loss of the last 40 steps: two ranks x {RAYS} rays {mean_two:.5f}, one x {2 * RAYS} rays {mean_one:.5f}")
    assert abs(mean_two - mean_one) < 0.25 * mean_one, (mean_two, mean_one)
    # The two-rank checkpoint resumes in one process where it stopped.
    resumed = run_ranks(1, tmp_path / "resumed", nerf_options(marker_collection, 2 * RAYS, ("--load-dir", str(checkpoints[0].parent))),
                        steps=10)
    assert resumed[0]["start"] == STEPS and len(resumed[0]["losses"]) == 10, (resumed[0]["start"], len(resumed[0]["losses"]))
    assert resumed[0]["losses"][0] < 2 * mean_two  # it goes on from the trained weights, not from scratch


def test_two_ranks_train_the_mappers_alike_from_different_draws(trained_run, marker_prompts, tmp_path):
    """clip-nerf-mappers on two ranks: each draws its own codes and prompts (different losses at
    step 0), the mappers' gradients are averaged, so both end with the same mappers."""
    extra = ("--pipeline.stage1", str(trained_run / "config.yml"), "--pipeline.model.prompts", str(marker_prompts),
             "--pipeline.model.views-per-step", "2", "--pipeline.model.loss.resolution", "32")
    two = run_ranks(2, tmp_path / "two", extra, steps=6, method="clip-nerf-mappers")
    assert two[0]["losses"][0] != two[1]["losses"][0]
    mappers = [key for key in two[0]["state"] if key.startswith("mappers.")]
    assert mappers
    for key in mappers:
        assert torch.equal(two[0]["state"][key], two[1]["state"][key]), key


def test_two_ranks_stream_and_train_the_adversarial_option_alike(marker_collection, tmp_path):
    """The discriminator's losses are taken after DDP's forward, so its gradients are averaged by
    hooks instead: both ranks end with the same discriminator and field, from different patches
    streamed from disk."""
    options = nerf_options(marker_collection, 64, ("--pipeline.model.adversarial", "True", "--pipeline.model.patch-size", "4",
                                                   "--pipeline.model.fake-patches", "2", "--pipeline.datamanager.streaming", "on",
                                                   "--pipeline.datamanager.images-per-batch", "4"))
    two = run_ranks(2, tmp_path / "two", options, steps=8)
    assert len(two[0]["first_rays"][0]) == 8 and two[0]["first_rays"] != two[1]["first_rays"]
    assert any(key.startswith("discriminator.") for key in two[0]["state"])
    for key, value in two[0]["state"].items():
        assert torch.equal(value, two[1]["state"][key]), key
