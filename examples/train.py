"""A user's own training program, the shape scalectl launches: torchrun sets RANK,
WORLD_SIZE and the rendezvous; the script reports progress through ``runtime.progress``
(optional: without a job directory it writes nothing) and reads the planned layout, when
it was launched with ``--plan``, through ``contract.env.layout()``.

    scalectl launch --nproc-per-node 2 -- python examples/train.py --lr 1e-2
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist

from runtime import progress


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=1e-2, help="SGD learning rate")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    target = torch.randn(16, 1)
    generator = torch.Generator().manual_seed(rank)
    for step in range(1, args.steps + 1):
        start = time.perf_counter()
        x = torch.randn(32, 16, generator=generator)
        loss = torch.nn.functional.mse_loss(model(x), x @ target)
        optimizer.zero_grad()
        loss.backward()
        for p in model.parameters():  # plain data parallelism: average the gradients
            assert p.grad is not None
            dist.all_reduce(p.grad)
            p.grad /= world
        optimizer.step()
        progress.report(
            step=step,
            loss=loss.item(),
            tokens=step * 32 * world,
            step_time_s=time.perf_counter() - start,
        )
    if rank == 0:
        print(f"done: {args.steps} steps, loss {loss.item():.4f}")
    # torch 2.13's gloo teardown (destroy_process_group, or the destructors at interpreter
    # exit) aborts about one run in twenty with "terminate called without an active
    # exception", after the work is done; torchrun would report the rank as failed. So,
    # as the reference trainer does (runtime/train/distributed.py leave): wait until every
    # rank is done, flush, and end without running destructors.
    dist.barrier()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
