"""fastckpt's benchmark suite: ``python -m benchmarks`` (see benchmarks/README.md).

Modules: workloads (the checkpoints), systems (one adapter per system compared), measure
(timing, CPU, peak RSS, durability), suite (the alternating rounds of one workload), micro
(CRC32C, thread and shard scaling), targets (PASS/MISS), report (tables, JSON, plots).
"""
