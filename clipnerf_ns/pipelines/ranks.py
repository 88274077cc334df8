"""Training on several processes (nerfstudio's launcher: `--machine.num-devices N`, torch DDP).

nerfstudio's `VanillaPipeline` wraps the model as `DDP(model, device_ids=[local_rank])` and waits
with `dist.barrier(device_ids=...)`, both of which only work on CUDA with NCCL; our pipelines are
built as for one process and wrapped here instead, on the model's own device, so the same code
runs on GPUs and, with gloo, on CPU processes (the tests). DDP starts every rank from rank 0's
weights and buffers (the code tables and occupancy grids among them), averages the gradients of
everything the model's forward used, and re-broadcasts rank 0's buffers at each forward.
"""

from __future__ import annotations

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def average_gradient_over_ranks(parameter) -> None:
    """After each backward, `parameter.grad` becomes its mean over the ranks (every rank runs the
    same backward, so the hooks meet in the same order)."""
    def hook(p) -> None:
        dist.all_reduce(p.grad)
        p.grad /= dist.get_world_size()

    parameter.register_post_accumulate_grad_hook(hook)


def wrap_for_ranks(pipeline, world_size: int, local_rank: int) -> None:
    """Wrap `pipeline._model` for `world_size` processes (nothing for one). Parameters of the
    submodules the model names in `used_outside_forward` (the discriminator: its losses are taken
    in `get_loss_dict`, after DDP's forward) are left out of DDP, which refuses them, and averaged
    by hooks instead."""
    pipeline.world_size = world_size
    if world_size <= 1:
        return
    model = pipeline._model
    outside = [(f"{name}.{key}", p) for name in getattr(model, "used_outside_forward", ())
               for key, p in getattr(model, name).named_parameters()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, [name for name, _ in outside])
    for _, parameter in outside:
        dist.broadcast(parameter.data, 0)  # the same start on every rank, as DDP gives the rest
        average_gradient_over_ranks(parameter)
    on_gpu = next(model.parameters()).device.type == "cuda"
    pipeline._model = DistributedDataParallel(model, device_ids=[local_rank] if on_gpu else None, find_unused_parameters=True)
    dist.barrier()


def without_ddp_prefix(state: dict) -> dict:
    """A pipeline's state dict with DDP's `module.` level removed, so checkpoints read the same
    however many ranks wrote them (nerfstudio's loader accepts both; our readers expect `_model.`)."""
    return {("_model." + key[len("_model.module."):] if key.startswith("_model.module.") else key): value
            for key, value in state.items()}
