"""JAX arrays sharded over 4 host devices (one process): saved as TensorFlow
slices of the global arrays, loaded into another sharding, exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

import fastckpt

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import jax, jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import fastckpt, fastckpt.distributed as fd
    mode, prefix = sys.argv[1], sys.argv[2]
    mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("a", "b"))
    w = np.arange(10 * 6, dtype=np.float32).reshape(10, 6)
    e = (np.arange(8) - 3).astype(np.int32)
    if mode == "save":
        state = {"w": jax.device_put(w, NamedSharding(mesh, P("a", "b"))),          # 4 pieces
                 "e": jax.device_put(e, NamedSharding(mesh, P("b"))),                # replicated over "a"
                 "r": jax.device_put(jnp.ones(4), NamedSharding(mesh, P())),         # fully replicated
                 "step": 7}
        res = fd.save(state, prefix)
        print(json.dumps({"files": len(res.files), "collectives": res.collectives}))
    else:
        target = {"w": jax.device_put(np.zeros_like(w), NamedSharding(mesh, P(None, "a"))),
                  "e": jax.device_put(np.zeros_like(e), NamedSharding(mesh, P("a"))),
                  "r": jax.device_put(jnp.zeros(4), NamedSharding(mesh, P("a"))),
                  "step": 0}
        back = fd.load(prefix, target)
        print(json.dumps({"w": np.asarray(back["w"]).tolist() == w.tolist(),
                          "w_sharding": list(back["w"].sharding.spec), "e": np.asarray(back["e"]).tolist(),
                          "r": np.asarray(back["r"]).tolist(), "step": back["step"],
                          "pieces": sorted(str(s.index) for s in back["w"].addressable_shards)[:1]}))
""")


def _run(mode, prefix):
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.path.dirname(os.path.dirname(fastckpt.__file__)),
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, prefix], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sharded_jax_arrays_save_and_load_into_another_sharding(tmp_path):
    prefix = str(tmp_path / "ck")
    saved = _run("save", prefix)
    assert saved["collectives"] == 0  # a world of one: nothing to exchange
    w = np.arange(60, dtype=np.float32).reshape(10, 6)
    # Stored as TensorFlow slices of the global array; readable whole.
    with fastckpt.load_checkpoint(prefix) as r:
        np.testing.assert_array_equal(r.get_tensor("w"), w)
        assert r.get_tensor("e").tolist() == list(range(-3, 5))
    loaded = _run("load", prefix)
    assert loaded["w"] and loaded["w_sharding"] == [None, "a"]
    assert loaded["e"] == list(range(-3, 5)) and loaded["r"] == [1.0] * 4 and loaded["step"] == 7
