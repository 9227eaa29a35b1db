"""The compression benchmark part runs on real weights and reports what it measured."""

from __future__ import annotations

import io

import ml_dtypes
import numpy as np

from benchmarks import bench_compression
from benchmarks.__main__ import parse_args


def test_compression_part_options():
    assert "compression" in parse_args([]).parts
    assert "compression" not in parse_args(["--quick"]).parts
    assert parse_args(["--quick", "--parts", "compression"]).parts == ["compression"]


def test_dataset_bench_on_model_weights(tmp_path):
    weights = bench_compression.model_weights()
    assert len(weights) > 50 and all(v.dtype == np.float32 for v in weights.values())
    some = dict(sorted(weights.items(), key=lambda kv: -kv[1].nbytes)[:3])
    bf16 = {k: v.astype(ml_dtypes.bfloat16) for k, v in some.items()}
    d = bench_compression.dataset_bench("bf16", bf16, str(tmp_path), rounds=1, cores=2)
    assert d["raw_bytes"] == sum(v.nbytes for v in bf16.values())
    ours, plain = d["systems"]["fastckpt"], d["systems"]["zstd-same-params"]
    # Byte planes beat zstd on the raw bytes of trained bfloat16 weights.
    assert ours["ratio"] > plain["ratio"] > 1.0
    assert ours["compress_gbps"] > 0 and ours["decompress_gbps"] > 0
    moments = bench_compression.adamw_moments(some, steps=2)
    assert sorted(moments) == sorted(f"{k}/{m}" for k in some if some[k].ndim == 2 for m in ("exp_avg", "exp_avg_sq"))
    assert all((v >= 0).all() for k, v in moments.items() if k.endswith("exp_avg_sq"))
    result = {
        "rounds": 1,
        "cores": 2,
        "datasets": [dict(d, title="bfloat16 weights")],
        "durable_bf16": bench_compression.durable_bench(bf16, str(tmp_path), rounds=1),
        "gil": bench_compression.gil_check(),
        "targets": {k: 1.0 for k in bench_compression.TARGETS},
    }
    out = io.StringIO()
    bench_compression.print_report(result, out)
    text = out.getvalue()
    assert "| bfloat16 weights |" in text and "compression='zstd'" in text
    # zstandard and numpy release the GIL; the pure-Python control does not.
    gil = result["gil"]
    assert gil["python loop (control)"]["max_stall_ms"] > 3 * max(
        gil[op]["max_stall_ms"] for op in ("zstd compress", "zstd decompress")
    )
