"""Multi-rank checkpoints with torch.distributed (CPU, gloo): save a sharded
model and optimizer from 2 ranks into one TensorFlow-layout checkpoint, then
restore it on 1 rank and on 4 ranks and check that every value matches.

    torchrun --nproc_per_node=2 examples/distributed_torch.py [/tmp/fastckpt-dist/ckpt]

The ranks of the first run train a small FSDP-sharded model for a few steps
and save with ``fastckpt.distributed.save``; rank 0 then starts the restores
(``--restore``) with torchrun on 1 and on 4 ranks, each of which loads the
checkpoint into its own sharding with ``fastckpt.distributed.load`` and
compares what it got with the full tensors read in one process
(``fastckpt.load``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, init_device_mesh

import fastckpt
import fastckpt.distributed as fd


def build(world: int) -> tuple:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 10))
    fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, optimizer


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(t.detach().float().numpy()).tobytes()).hexdigest()[:16]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save(prefix: str) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    model, optimizer = build(world)
    for step in range(3):
        g = torch.Generator().manual_seed(step * 100 + rank)
        x, y = torch.randn(8, 64, generator=g), torch.randint(0, 10, (8,), generator=g)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    result = fd.save(
        {
            "model": model.state_dict(),
            "optim": optimizer.state_dict(),
            "step": 3,
            "rng": fd.PerRank(torch.get_rng_state()),
        },
        prefix,
    )
    print(
        f"rank {rank}/{world}: wrote {result.nbytes} bytes; checkpoint of {len(result.files)} files "
        f"committed with {result.collectives} collectives",
        flush=True,
    )
    dist.barrier()
    if rank == 0:
        for n in (1, 4):
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                f"--nproc_per_node={n}",
                f"--master_port={free_port()}",
                os.path.abspath(__file__),
                "--restore",
                prefix,
            ]
            subprocess.run(
                cmd,
                check=True,
                env={
                    k: v
                    for k, v in os.environ.items()
                    if k
                    not in (
                        "RANK",
                        "WORLD_SIZE",
                        "LOCAL_RANK",
                        "MASTER_PORT",
                        "MASTER_ADDR",
                        "LOCAL_WORLD_SIZE",
                        "TORCHELASTIC_RUN_ID",
                        "GROUP_RANK",
                    )
                },
            )


def restore(prefix: str) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    model, optimizer = build(world)
    state = fd.load(prefix, {"model": model.state_dict(), "step": 0}, strict=False)
    full = fastckpt.load(prefix)["model"]  # every tensor whole, in one process
    matches = 0
    for name, t in model.state_dict().items():
        local = t.to_local() if isinstance(t, DTensor) else t
        want = torch.from_numpy(np.asarray(full[name]))
        if isinstance(t, DTensor):
            from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

            shape, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
            want = want[tuple(slice(o, o + s) for o, s in zip(offset, shape))]
        assert torch.equal(local, want), name
        matches += 1
    print(
        f"restore on {world} rank(s), rank {rank}: {matches} tensors match the checkpoint "
        f"(step {state['step']}, weight digest {digest(local)})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", nargs="?", default="/tmp/fastckpt-dist/ckpt")
    parser.add_argument("--restore", action="store_true", help="restore (started by the save run)")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    try:
        (restore if args.restore else save)(args.prefix)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
