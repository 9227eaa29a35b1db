"""GPU benchmarks (need a CUDA GPU, CuPy and/or a CUDA build of torch).

1. Device-to-host staging: fastckpt saving device arrays to /dev/shm-like
   page cache against CuPy's pinned ``cudaMemcpy`` peak for the same bytes
   (target: >= 0.8x). The staging rate is measured as bytes / (save time)
   with durable=False, so the write into the page cache is included; the
   copy-only peak is the upper bound.
2. End-to-end save from GPU memory: ``fastckpt.save`` of a CUDA state dict
   against ``torch.save`` of the same dict and against ``.cpu()`` followed by
   ``fastckpt.save``, alternating.
3. Asynchronous save: the time ``save(..., blocking=False)`` blocks against
   bytes / device-to-host bandwidth (target: <= 1.2x + 0.1 s).

    python benchmarks/bench_gpu.py [--size-gb 2] [--rounds 5] [--dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time


def _pinned_peak(cp, nbytes: int, rounds: int) -> float:
    """GB/s of one cudaMemcpy device-to-host into pinned memory (best of rounds)."""
    src = cp.empty(nbytes, dtype=cp.uint8)
    mem = cp.cuda.alloc_pinned_memory(nbytes)
    best = 0.0
    for _ in range(rounds):
        cp.cuda.runtime.deviceSynchronize()
        t = time.perf_counter()
        cp.cuda.runtime.memcpy(mem.ptr, src.data.ptr, nbytes, cp.cuda.runtime.memcpyDeviceToHost)
        best = max(best, nbytes / (time.perf_counter() - t) / 1e9)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import fastckpt

    info = fastckpt.build_info()
    if info["device_path"] != "cuda":
        print(
            f"no CUDA device path on this machine ({info['cuda_error'] or info['device_path']}); nothing to measure",
            file=sys.stderr,
        )
        return 2
    try:
        import cupy as cp
    except ImportError:
        cp = None
    try:
        import torch

        torch = torch if torch.cuda.is_available() else None
    except ImportError:
        torch = None
    nbytes = int(args.size_gb * 1e9) // 4 * 4
    root = tempfile.mkdtemp(prefix="fastckpt-gpu-", dir=args.dir)
    results: dict = {"device": None, "bytes": nbytes}
    try:
        if cp is not None:
            results["device"] = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
            peak = _pinned_peak(cp, nbytes, args.rounds)
            x = cp.random.standard_normal(nbytes // 4, dtype=cp.float32)
            fastckpt.save({"x": x}, os.path.join(root, "warm"), durable=False)
            rates = []
            for _ in range(args.rounds):
                cp.cuda.runtime.deviceSynchronize()
                res = fastckpt.save({"x": x}, os.path.join(root, "stage"), durable=False)
                rates.append(nbytes / res.seconds / 1e9)
            results["staging"] = {
                "pinned_memcpy_peak_gbps": peak,
                "fastckpt_gbps": statistics.median(rates),
                "ratio": statistics.median(rates) / peak,
                "target": 0.8,
            }
            print(
                f"D2H staging: fastckpt {statistics.median(rates):.2f} GB/s vs pinned cudaMemcpy "
                f"{peak:.2f} GB/s = {statistics.median(rates) / peak:.2f}x (target >= 0.8x)"
            )
            async_rows = []
            for r in range(args.rounds):
                cp.cuda.runtime.deviceSynchronize()
                t = time.perf_counter()
                h = fastckpt.save({"x": x}, os.path.join(root, f"async{r}"), durable=False, blocking=False)
                blocked = time.perf_counter() - t
                h.result()
                async_rows.append(blocked)
            bound = 1.2 * nbytes / (peak * 1e9) + 0.1
            results["async"] = {"blocked_s": statistics.median(async_rows), "bound_s": bound}
            print(
                f"async save blocked {statistics.median(async_rows):.3f} s; target <= 1.2 x bytes/D2H + 0.1 s "
                f"= {bound:.3f} s"
            )
        if torch is not None:
            layers = max(1, nbytes // (4 * 4096 * 4096))
            sd = {f"layer{i}.weight": torch.randn(4096, 4096, device="cuda") for i in range(layers)}
            sbytes = sum(t.numel() * 4 for t in sd.values())
            rows = {"fastckpt": [], "torch.save": [], "cpu+fastckpt": []}
            for r in range(args.rounds):
                order = list(rows)[r % 3 :] + list(rows)[: r % 3]
                for name in order:
                    torch.cuda.synchronize()
                    os.sync()
                    t = time.perf_counter()
                    if name == "fastckpt":
                        fastckpt.save(sd, os.path.join(root, "e2e"), durable=True)
                    elif name == "torch.save":
                        path = os.path.join(root, "e2e.pt")
                        with open(path, "wb") as f:
                            torch.save(sd, f)
                            f.flush()
                            os.fsync(f.fileno())
                    else:
                        fastckpt.save({k: v.cpu() for k, v in sd.items()}, os.path.join(root, "e2e_cpu"), durable=True)
                    rows[name].append(sbytes / (time.perf_counter() - t) / 1e9)
            med = {k: statistics.median(v) for k, v in rows.items()}
            results["end_to_end"] = {"bytes": sbytes, "gbps": med}
            print("end-to-end durable save from GPU memory: " + ", ".join(f"{k} {v:.2f} GB/s" for k, v in med.items()))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
