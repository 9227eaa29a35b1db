"""Save a model-sized set of tensors with fastckpt, read it back verified, and
show what was written and how fast.

    python examples/demo.py [--size-gb 0.5] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

import fastckpt


def model_tensors(total_bytes: int, seed: int = 0) -> dict:
    """A transformer-shaped state dict: embedding, per-layer attention and MLP
    matrices, norms and biases, scaled so the float32 total is about total_bytes."""
    d_model = 1024
    per_layer = (4 * d_model * d_model + 2 * 4 * d_model * d_model) * 4  # q,k,v,o + MLP in/out
    vocab = 8192
    layers = max(1, int((total_bytes - vocab * d_model * 4) // per_layer))
    rng = np.random.default_rng(seed)
    t = {"embedding/weights": rng.standard_normal((vocab, d_model), dtype=np.float32)}
    for i in range(layers):
        p = f"layer_{i:02d}"
        for m in ("q", "k", "v", "o"):
            t[f"{p}/attention/{m}/kernel"] = rng.standard_normal((d_model, d_model), dtype=np.float32)
        t[f"{p}/mlp/in/kernel"] = rng.standard_normal((d_model, 4 * d_model), dtype=np.float32)
        t[f"{p}/mlp/in/bias"] = np.zeros(4 * d_model, np.float32)
        t[f"{p}/mlp/out/kernel"] = rng.standard_normal((4 * d_model, d_model), dtype=np.float32)
        t[f"{p}/mlp/out/bias"] = np.zeros(d_model, np.float32)
        for n in ("ln1", "ln2"):
            t[f"{p}/{n}/gamma"] = np.ones(d_model, np.float32)
            t[f"{p}/{n}/beta"] = np.zeros(d_model, np.float32)
    t["global_step"] = np.int64(1000)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=0.5, help="checkpoint size in GB (default 0.5)")
    ap.add_argument("--dir", help="where to write (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint files")
    args = ap.parse_args()

    info = fastckpt.build_info()
    print(
        f"fastckpt {info['version']}: CRC32C {info['crc32c_impl']}, {info['io_threads']} I/O threads, "
        f"CUDA driver {'found' if info['cuda_driver_found'] else 'not found'}"
    )
    tensors = model_tensors(int(args.size_gb * 1e9))
    total = sum(np.asarray(v).nbytes for v in tensors.values())
    print(f"model: {len(tensors)} tensors, {total / 1e9:.3f} GB")

    workdir = args.dir or tempfile.mkdtemp(prefix="fastckpt-demo-")
    os.makedirs(workdir, exist_ok=True)
    prefix = os.path.join(workdir, "model.ckpt")
    try:
        for durable in (False, True):
            result = fastckpt.save(tensors, prefix, durable=durable)
            mode = "durable (fsync)" if durable else "page cache"
            print(f"save [{mode:15s}]: {result.seconds:6.3f} s  {result.gbps:6.2f} GB/s")
        print("files:")
        for path in result.files:
            print(f"  {path}  ({os.path.getsize(path):,} bytes)")

        start = time.perf_counter()
        loaded = fastckpt.load(prefix)
        seconds = time.perf_counter() - start
        print(f"load (every CRC verified): {seconds:6.3f} s  {total / seconds / 1e9:6.2f} GB/s")
        for name, value in tensors.items():
            assert np.array_equal(loaded[name], value), name
        print("round trip: all tensors equal")
        print("first entries:", fastckpt.list_variables(prefix)[:3])
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
