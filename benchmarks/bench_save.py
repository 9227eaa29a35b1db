#!/usr/bin/env python
"""Save/restore throughput: fastckpt vs TensorFlow's Saver vs raw parallel I/O.

One set of float32 tensors shaped like a GPT-style transformer (token/position embeddings,
per-layer attention q/k/v/o and MLP kernels with biases, layer norms) is written, in
alternating rounds, by:

  fastckpt      fastckpt.save(durable=--durable)
  tf            tf.compat.v1.train.Saver in graph mode (variables built once; only
                saver.save(sess, path, write_meta_graph=False, write_state=False) is timed)
  raw-N         N threads (N = cores) os.pwrite-ing equal shares of the same bytes, one file
                per thread, files opened fresh each round (no format, no CRC)
  raw-1         the same with one thread

then read back by fastckpt.load, tf Saver.restore, and raw-N (os.preadv into fresh np.empty
arrays). Restores read files that were just written, so they hit the page cache: caches are
deliberately not dropped on a shared machine. Without --durable, saves are page-cache writes
too (nothing fsynced; an untimed os.sync() precedes each save and each restore so that no
system competes with the writeback of another).
With --durable every system's files are fsynced (plus the directory) inside the timing.

Reported: per-system median GB/s (GB = 1e9 B), and ratios computed as the median of per-round
paired ratios. ``--json PATH`` writes every raw timing.

    python benchmarks/bench_save.py --size-gb 1 --rounds 5
    python benchmarks/bench_save.py --quick            # 64 MB, 2 rounds (CI smoke test)
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

SAVE_SYSTEMS = ["fastckpt", "tf", "raw-N", "raw-1"]
RESTORE_SYSTEMS = ["fastckpt", "tf", "raw-N"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-gb", type=float, default=None,
                   help="checkpoint size in GB (1e9 B); default 1.0 (0.064 with --quick)")
    p.add_argument("--rounds", type=int, default=None,
                   help="alternating rounds; default 5 (2 with --quick)")
    p.add_argument("--quick", action="store_true", help="64 MB, 2 rounds: a smoke test")
    p.add_argument("--durable", action="store_true",
                   help="fsync every system's files and directory, inside the timing")
    p.add_argument("--threads", type=int, default=None,
                   help="raw-N thread count and fastckpt's threads= (default: cores for raw, "
                        "fastckpt's own default for fastckpt)")
    p.add_argument("--dir", default=None,
                   help="parent of the scratch directory (default: /tmp); the scratch "
                        "directory is created fresh and removed at the end")
    p.add_argument("--json", default=None, metavar="PATH", help="write all timings as JSON")
    p.add_argument("--no-tf", action="store_true", help="skip the TensorFlow baseline")
    p.add_argument("--no-sync-between", action="store_true",
                   help="do not os.sync() (untimed) before each save and restore")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.size_gb is None:
        args.size_gb = 0.064 if args.quick else 1.0
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.size_gb <= 0 or args.rounds < 1:
        p.error("--size-gb must be > 0 and --rounds >= 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    return args


class TFSaverBench:
    """Graph-mode TF1 Saver over resource variables holding the benchmark's values."""

    def __init__(self, tensors):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        self.tf = tf
        self.version = tf.__version__
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.variables = {}
            assigns, feeds = [], {}
            for name, a in tensors.items():
                v = tf.compat.v1.get_variable(
                    name, shape=a.shape, dtype=tf.as_dtype(a.dtype),
                    initializer=tf.compat.v1.zeros_initializer(), use_resource=True)
                ph = tf.compat.v1.placeholder(tf.as_dtype(a.dtype), shape=a.shape)
                assigns.append(v.assign(ph, read_value=False))
                feeds[ph] = a
                self.variables[name] = v
            self.saver = tf.compat.v1.train.Saver(var_list=self.variables, sharded=False,
                                                  max_to_keep=None)
            self.sess = tf.compat.v1.Session(graph=self.graph)
            self.sess.run(tf.compat.v1.global_variables_initializer())
            self.sess.run(assigns, feed_dict=feeds)  # values in place once, untimed
            self.graph.finalize()

    def save(self, prefix: str) -> str:
        with self.graph.as_default():  # Saver.save must not run eagerly
            return self.saver.save(self.sess, prefix, write_meta_graph=False,
                                   write_state=False)

    def restore(self, prefix: str) -> None:
        with self.graph.as_default():
            self.saver.restore(self.sess, prefix)

    def value(self, name: str) -> np.ndarray:
        return self.sess.run(self.variables[name])

    def close(self) -> None:
        self.sess.close()


def fsync_files(paths, directory):
    for path in paths:
        C.fsync_path(path)
    C.fsync_dir(directory)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import fastckpt
    except Exception as e:  # noqa: BLE001 - report and stop
        print(f"fastckpt is not importable: {type(e).__name__}: {e}", file=sys.stderr)
        return 2

    cores = C.num_cores()
    nthreads = args.threads or cores
    parent = args.dir or "/tmp"
    os.makedirs(parent, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="fastckpt-bench-", dir=parent)
    try:
        return run(args, fastckpt, workdir, nthreads)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(args, fastckpt, workdir: str, nthreads: int) -> int:
    info = C.machine_info(workdir)
    shapes, model = C.transformer_shapes(int(args.size_gb * C.GB))
    t0 = time.perf_counter()
    tensors = C.make_tensors(shapes, np.float32, seed=args.seed)
    nbytes = C.total_nbytes(tensors)
    gen_s = time.perf_counter() - t0
    ram = C.ram_bytes()
    if ram and nbytes * 5 > ram:
        print(f"warning: {nbytes / C.GB:.2f} GB x ~5 copies may not fit in "
              f"{ram / 2**30:.1f} GiB RAM", file=sys.stderr)

    mode = "durable (fsync files + dir, inside the timing)" if args.durable else \
        "page-cache (no fsync)"
    fc_version = getattr(fastckpt, "__version__", "?")
    print(f"fastckpt bench_save: {nbytes / C.GB:.3f} GB float32 transformer "
          f"(hidden {model['hidden']}, {model['layers']} layers, vocab {model['vocab']}; "
          f"{len(tensors)} tensors; generated in {gen_s:.1f} s), {args.rounds} rounds, {mode}")
    C.print_machine(info)

    tfb = None
    tf_note = None
    if args.no_tf:
        tf_note = "TensorFlow baseline skipped (--no-tf)"
    else:
        try:
            t0 = time.perf_counter()
            tfb = TFSaverBench(tensors)
            tf_setup_s = time.perf_counter() - t0
        except ImportError as e:
            tf_note = f"TensorFlow baseline skipped: TensorFlow not importable ({e})"
    versions = f"fastckpt {fc_version}, numpy {np.__version__}"
    if tfb is not None:
        versions += f", tensorflow {tfb.version} (graph built in {tf_setup_s:.1f} s)"
    print(f"versions: {versions}")
    print(f"threads : raw-N uses {nthreads}; fastckpt threads="
          f"{args.threads if args.threads else 'default'}")
    if tf_note:
        print(f"note    : {tf_note}")
    print("note    : restores read files just written, so they hit the page cache "
          "(caches are not dropped)")
    if not args.durable:
        print("note    : saves are page-cache writes (no fsync); use --durable to include fsync")

    save_systems = [s for s in SAVE_SYSTEMS if s != "tf" or tfb is not None]
    restore_systems = [s for s in RESTORE_SYSTEMS if s != "tf" or tfb is not None]
    arrays = list(tensors.values())
    array_specs = [(a.shape, a.dtype) for a in arrays]
    rounds = []
    ok = True

    for r in range(args.rounds):
        rd = os.path.join(workdir, f"round{r:03d}")
        os.makedirs(rd)
        prefixes = {
            "fastckpt": os.path.join(rd, "fastckpt"),
            "tf": os.path.join(rd, "tf"),
            "raw-N": os.path.join(rd, "rawN"),
            "raw-1": os.path.join(rd, "raw1"),
        }
        k = r % len(save_systems)
        order = save_systems[k:] + save_systems[:k]
        rec = {"round": r, "save_order": order, "save": {}, "restore": {}, "fastckpt_reported": {}}
        for sysname in order:
            gc.collect()
            if not args.no_sync_between:
                os.sync()
            prefix = prefixes[sysname]
            if sysname == "fastckpt":
                with C.Timer() as t:
                    res = fastckpt.save(tensors, prefix, threads=args.threads,
                                        durable=args.durable)
                rec["fastckpt_reported"] = {"seconds": getattr(res, "seconds", None),
                                            "nbytes": getattr(res, "nbytes", None),
                                            "num_shards": getattr(res, "num_shards", None)}
            elif sysname == "tf":
                with C.Timer() as t:
                    tfb.save(prefix)
                    if args.durable:
                        fsync_files(C.files_with_prefix(rd, "tf."), rd)
            elif sysname == "raw-N":
                with C.Timer() as t:
                    C.raw_write(arrays, prefix, nthreads, args.durable)
            else:
                with C.Timer() as t:
                    C.raw_write(arrays, prefix, 1, args.durable)
            rec["save"][sysname] = t.seconds

        k = r % len(restore_systems)
        rorder = restore_systems[k:] + restore_systems[:k]
        rec["restore_order"] = rorder
        for sysname in rorder:
            gc.collect()
            if not args.no_sync_between:
                os.sync()  # background writeback of the saves must not slow a restore
            out = None
            if sysname == "fastckpt":
                with C.Timer() as t:
                    out = fastckpt.load(prefixes["fastckpt"], threads=args.threads)
                if r == 0:
                    ok &= verify(out, tensors, "fastckpt.load")
            elif sysname == "tf":
                with C.Timer() as t:
                    tfb.restore(prefixes["tf"])
                if r == 0:
                    some = next(iter(tensors))
                    ok &= verify({some: tfb.value(some)}, {some: tensors[some]}, "tf restore")
            else:
                with C.Timer() as t:
                    got = C.raw_read(array_specs, prefixes["raw-N"], nthreads)
                if r == 0:
                    ok &= verify(dict(zip(tensors, got)), tensors, "raw read")
                del got
            del out
            rec["restore"][sysname] = t.seconds
        rounds.append(rec)
        shutil.rmtree(rd)
        print(f"round {r + 1}/{args.rounds}: save " + ", ".join(
            f"{s} {C.gbps(nbytes, rec['save'][s]):.2f}" for s in save_systems) +
            " GB/s; restore " + ", ".join(
            f"{s} {C.gbps(nbytes, rec['restore'][s]):.2f}" for s in restore_systems) + " GB/s",
            flush=True)

    if tfb is not None:
        tfb.close()

    summary = report(rounds, nbytes, save_systems, restore_systems, nthreads)
    if args.json:
        C.write_json(args.json, {
            "config": {k: v for k, v in vars(args).items()},
            "machine": info,
            "model": dict(model, tensors=len(tensors), nbytes=nbytes),
            "versions": versions,
            "raw_threads": nthreads,
            "rounds": rounds,
            "summary": summary,
            "notes": [n for n in [tf_note, "restores hit the page cache"] if n],
        })
        print(f"timings written to {args.json}")
    if not ok:
        print("ERROR: a restore returned wrong values", file=sys.stderr)
        return 1
    return 0


def verify(got, expected, what: str) -> bool:
    if set(got) != set(expected):
        print(f"ERROR: {what}: names differ", file=sys.stderr)
        return False
    for name, a in expected.items():
        b = np.asarray(got[name])
        if b.dtype != a.dtype or b.shape != a.shape or not np.array_equal(a, b):
            print(f"ERROR: {what}: {name} differs", file=sys.stderr)
            return False
    return True


def report(rounds, nbytes, save_systems, restore_systems, nthreads):
    labels = {
        "fastckpt": ("fastckpt.save", "fastckpt.load"),
        "tf": ("tf1 Saver.save", "tf1 Saver.restore"),
        "raw-N": (f"raw pwrite, {nthreads} threads", f"raw preadv, {nthreads} threads"),
        "raw-1": ("raw pwrite, 1 thread", "raw preadv, 1 thread"),
    }
    summary = {"save": {}, "restore": {}, "ratios": {}}
    print()
    print(f"{'':34s}{'median GB/s':>12s}{'median s':>10s}{'min s':>9s}{'max s':>9s}")
    for phase, systems, col in (("save", save_systems, 0), ("restore", restore_systems, 1)):
        print(phase)
        for s in systems:
            secs = [rd[phase][s] for rd in rounds]
            med = C.median(secs)
            summary[phase][s] = {"median_gbps": C.gbps(nbytes, med), "median_s": med,
                                 "seconds": secs}
            print(f"  {labels[s][col]:32s}{C.gbps(nbytes, med):12.2f}{med:10.3f}"
                  f"{min(secs):9.3f}{max(secs):9.3f}")
    print("ratios of throughput (median of per-round paired ratios; > 1 means fastckpt faster)")
    for phase, systems in (("save", save_systems), ("restore", restore_systems)):
        fc = [rd[phase]["fastckpt"] for rd in rounds]
        parts = []
        for other in systems:
            if other == "fastckpt":
                continue
            ratio = C.paired_ratio(fc, [rd[phase][other] for rd in rounds])
            summary["ratios"][f"{phase}:fastckpt/{other}"] = ratio
            parts.append(f"fastckpt/{other} = {ratio:.2f}")
        print(f"  {phase:8s}" + "   ".join(parts))
    return summary


if __name__ == "__main__":
    sys.exit(main())
