"""Crash consistency: SIGKILL a process saving with ``fastckpt.Saver`` at random
moments, restart it, and check after every kill what the commit protocol
guarantees.

The worker (``tests/crash_worker.py``) saves 192 MiB per step in 3 shards
with ``durable=True``, ``max_to_keep=3``; every element of step N's tensors
is N. On restart it resumes from ``latest_checkpoint + 1`` and hands the
state file's list to ``Saver.recover_last_checkpoints`` (what a restarted
TF1 training job does), so retention continues across restarts.

``Saver.save`` does, in this order: write data shards + index under
temporary names, rename data then index (the checkpoint now exists), write
the ``checkpoint`` state file atomically (it now lists the new checkpoint and
drops the oldest), delete the dropped checkpoint (``.meta``, ``.index``,
then data); the ``.meta`` is written atomically just before or after the
state file (versions differ). A kill can land anywhere in that sequence.
What this guarantees, and what the test asserts after each kill:

* ``latest_checkpoint(dir)`` is None only if no save has returned yet (then
  there is no state file either); otherwise it names step N with
  ``max returned step <= N <= step being saved at the kill``, N never goes
  backwards, the checkpoint verifies (every CRC) and all its tensors equal N.
* The state file's ``model_checkpoint_path`` is the last of
  ``all_model_checkpoint_paths``; that list has 1..max_to_keep consecutive
  steps, each of which exists, verifies, and holds its own step.
* Complete checkpoints (``.index`` present) at or above the oldest listed
  step are exactly the listed ones plus, possibly, the step that was being
  saved (killed after its index rename, before the state update: not yet
  "latest"; the restarted worker saves that step again). So at most
  ``max_to_keep + 1`` complete checkpoints are managed.
* NOT guaranteed (and not asserted): that older checkpoints are gone. A kill
  between the state update and the deletion of the dropped checkpoint leaves
  it complete on disk but listed nowhere; nothing will ever delete it
  (TensorFlow's Saver behaves the same way). The test asserts only that each
  kill adds at most one such orphan, and that orphans are intact. Likewise
  a kill in the middle of a deletion can leave data shards without an index
  (never mistaken for a checkpoint).
* Every ``.meta`` present parses (it is written atomically).
* A kill on entry to the j-th rename of a save (strace mode, below) leaves
  exactly j-1 data shards renamed and no index for j <= 4, and a complete
  checkpoint after (data first, the index last).
* Every temporary file, of the data, the index, the ``.meta`` and the state
  file alike, has fastckpt's own name ``<final>.tempstate-fastckpt-<16 hex>``
  (TensorFlow's ``.tmp<hex>`` naming never appears). Those of a killed save
  are unlocked once it is dead, and any save that starts when they are > 3 s
  old (cleanup removes unlocked temp files aged >= 2 whole seconds) removes
  them; a final save after the last kill leaves none. A kill on entry to the
  ``.meta`` or state file rename (strace mode) leaves exactly that file's
  temporary file, and some kills are always placed there (kills 3 and 5).

The kill schedule mixes uniformly random delays after start-up with kills
timed from the worker's phase markers (just after the commit, the state
update, a retention unlink, or near the expected end of the data write), so
kills land during writes, the state update and retention. The commit's
renames take microseconds, too short to hit from outside; where ``strace``
can trace the worker, some runs therefore let the kernel deliver the SIGKILL
on entry to the N-th ``rename`` (3 data shards, the index, the ``.meta``, the
state file: between any two of them) or the N-th ``unlink`` (mid-retention)
with ``strace -e inject=...:signal=SIGKILL``; without strace those modes are
replaced by random delays.

``FASTCKPT_CRASH_SEED``, ``FASTCKPT_CRASH_KILLS`` and ``FASTCKPT_CRASH_MB``
override the seed (printed in every failure), the number of kills and the
step size.
"""

from __future__ import annotations

import collections
import os
import random
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
from google.protobuf import text_format
from helpers import flock_held

import fastckpt
from fastckpt.proto import CheckpointState, MetaGraphDef

SEED = int(os.environ.get("FASTCKPT_CRASH_SEED", "1234"))
KILLS = int(os.environ.get("FASTCKPT_CRASH_KILLS", "32"))
MB = int(os.environ.get("FASTCKPT_CRASH_MB", "192"))
SHARDS = 3
MAX_TO_KEEP = 3
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crash_worker.py")
CYCLE_TIMEOUT = 60.0
RENAMES_PER_SAVE = 6  # 3 data shards, index, .meta, state file
STRACE = shutil.which("strace")
# RemoveStaleTempFiles removes temp files aged >= 2 s in whole seconds of
# time(); a file 3 s old always qualifies. Half a second more for clocks.
STALE_AFTER = 3.5

# Kill number -> the rename (of a save: 5 = .meta, 6 = state file) that kill
# lands on, where strace works: the state file and .meta writes are always hit.
FORCED_RENAME_KILLS = {3: 5, 5: 6}
TEMP_RE = re.compile(r"^(?P<final>.+)\.tempstate-fastckpt-[0-9a-f]{16}$")

INDEX_RE = re.compile(r"^model-(\d+)\.index$")
DATA_RE = re.compile(r"^model-(\d+)\.data-(\d{5})-of-(\d{5})$")
META_RE = re.compile(r"^model-(\d+)\.meta$")


def step_of(prefix: str) -> int:
    m = re.search(r"-(\d+)$", prefix)
    assert m is not None, f"not a step checkpoint prefix: {prefix!r}"
    return int(m.group(1))


def verify(prefix: str) -> None:
    """Every CRC of the checkpoint; fastckpt.verify if this build has it."""
    if hasattr(fastckpt, "verify"):
        fastckpt.verify(prefix)
    else:
        fastckpt.load(prefix)


def _signature(prefix: str) -> tuple:
    """Identity of a checkpoint's files: unchanged files need not be read again."""
    d, base = os.path.split(prefix)
    out = []
    for name in sorted(os.listdir(d)):
        if name == base + ".index" or name.startswith(base + ".data-"):
            st = os.stat(os.path.join(d, name))
            out.append((name, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


_checked: Dict[Tuple[str, str], tuple] = {}


def _once(what: str, prefix: str, check) -> None:
    """Runs check(prefix) unless it already passed on exactly these files."""
    sig = _signature(prefix)
    if _checked.get((what, prefix)) != sig:
        check(prefix)
        _checked[(what, prefix)] = sig


@dataclass
class Event:
    kind: str
    arg: str
    t: float


@dataclass
class History:
    """What the test knows across kills."""

    max_saved: Optional[int] = None  # highest step whose Saver.save returned
    max_begun: Optional[int] = None  # highest step any worker started to save
    prev_latest: Optional[int] = None
    orphans: int = 0
    kills: int = 0
    save_spans: List[Tuple[float, int]] = field(default_factory=list)  # (begin time, step) of returned saves
    durations: List[float] = field(default_factory=list)
    landed: collections.Counter = field(default_factory=collections.Counter)
    modes: collections.Counter = field(default_factory=collections.Counter)
    leftovers: collections.Counter = field(default_factory=collections.Counter)
    temps_seen: set = field(default_factory=set)  # (kind, name) of every temporary file seen

    def estimate(self) -> float:
        return statistics.median(self.durations[-9:]) if self.durations else 0.8


class Run:
    """One worker process and the events it printed."""

    def __init__(self, directory: str, log, max_steps: int = 0, inject: Optional[str] = None) -> None:
        args = [sys.executable, WORKER, directory, "--mb", str(MB), "--shards", str(SHARDS)]
        if max_steps:
            args += ["--max-steps", str(max_steps)]
        if inject:
            args = _strace_args(inject) + args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, bufsize=0, env=_worker_env())
        self.events: List[Event] = []
        self._buf = b""
        self.eof = False

    def _feed(self, chunk: bytes) -> List[Event]:
        self._buf += chunk
        new = []
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            kind, arg, t = line.decode().split(" ")
            new.append(Event(kind, arg, float(t)))
        self.events.extend(new)
        return new

    def read_until(self, stop, deadline: float) -> Optional[Event]:
        """Reads events until stop(event) is true (returns it), EOF, or the deadline."""
        fd = self.proc.stdout.fileno()
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self.eof = True
                break
            for ev in self._feed(chunk):
                if stop(ev):
                    return ev
        return None

    def worker_pid(self) -> Optional[int]:
        return next((int(e.arg) for e in self.events if e.kind == "pid"), None)

    def kill(self) -> None:
        pid = self.worker_pid()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if pid is not None and pid != self.proc.pid:  # under strace: make sure the worker is gone
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not self.proc.stdout.closed:
            self._feed(self.proc.stdout.read() or b"")
            self.proc.stdout.close()

    def close(self) -> None:
        """Waits for a worker that exits by itself and collects the rest of its output."""
        self.proc.wait(timeout=CYCLE_TIMEOUT)
        self._feed(self.proc.stdout.read() or b"")
        self.proc.stdout.close()


def _worker_env() -> dict:
    """The environment of a worker: it imports the fastckpt under test (the worker's
    own directory, not the current one, heads its sys.path)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastckpt.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _strace_args(inject: str) -> list:
    """strace delivering SIGKILL on entry to the when-th call of a syscall, e.g. 'rename:4'."""
    call, when = inject.split(":")
    calls = {"rename": "rename,renameat,renameat2", "unlink": "unlink,unlinkat"}[call]
    return [
        STRACE,
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        f"trace={calls}",
        "-e",
        f"inject={calls}:signal=SIGKILL:when={when}",
    ]


def _strace_works() -> bool:
    """strace exists, may trace our children, and injects SIGKILL (not in every container)."""
    if STRACE is None:
        return False
    with tempfile.TemporaryDirectory() as d:
        a, b = os.path.join(d, "a"), os.path.join(d, "b")
        code = f"import os; open({a!r}, 'w').close(); os.rename({a!r}, {b!r})"
        try:
            proc = subprocess.run(
                _strace_args("rename:1") + [sys.executable, "-c", code], capture_output=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return (
            proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL) and os.path.exists(a) and not os.path.exists(b)
        )


def _flock_free(path: str) -> bool:
    """No writer holds the file's lock (or the file is gone)."""
    try:
        return not flock_held(path)
    except FileNotFoundError:
        return True


def _steps_equal(prefix: str, n: int) -> None:
    """All tensors of `prefix` are filled with n (each read CRC-verified)."""
    with fastckpt.load_checkpoint(prefix) as reader:
        names = reader.keys()
        assert names == ["dense/bias", "dense/kernel", "embedding/table", "optimizer/momentum", "step"], names
        for name in names:
            value = reader.get_tensor(name)
            assert value.size > 0 and bool(np.all(value == n)), (
                f"{prefix}: tensor {name!r} does not hold step {n} everywhere (first {value.flat[0]!r})"
            )


def check_invariants(d: str, hist: History, final: bool = False) -> None:
    # The only step above the latest one that can have been started is latest + 1 (the
    # worker resumes there), so it is the only one that may be complete but unrecorded.
    pending = {hist.max_begun} if hist.max_begun is not None else set()
    names = os.listdir(d)
    complete = {int(m.group(1)) for m in map(INDEX_RE.match, names) if m}
    data_steps = collections.defaultdict(set)
    for m in map(DATA_RE.match, names):
        if m:
            data_steps[int(m.group(1))].add(m.group(0))

    state = fastckpt.get_checkpoint_state(d)  # a garbled state file raises / returns None
    latest = fastckpt.latest_checkpoint(d)
    if latest is None:
        assert hist.max_saved is None, (
            f"latest_checkpoint is None although step {hist.max_saved} was saved (Saver.save returned)"
        )
        assert state is None, f"a state file exists but names no existing checkpoint: {state}"
        assert complete <= pending, f"complete checkpoints {sorted(complete)} exist though none was recorded"
        listed: List[int] = []
    else:
        n = step_of(latest)
        assert latest == os.path.join(d, f"model-{n}"), latest
        if hist.max_saved is not None:
            assert n >= hist.max_saved, f"latest is step {n}, but step {hist.max_saved} was saved"
        if hist.prev_latest is not None:
            assert n >= hist.prev_latest, f"latest went back from {hist.prev_latest} to {n}"
        assert hist.max_begun is not None and n <= hist.max_begun, (
            f"latest is step {n}, beyond any step begun ({hist.max_begun})"
        )
        _once("verify", latest, verify)
        _once("values", latest, lambda p: _steps_equal(p, n))
        hist.prev_latest = n

        assert state is not None
        paths = list(state.all_model_checkpoint_paths)
        assert state.model_checkpoint_path == latest, (state.model_checkpoint_path, latest)
        assert paths and paths[-1] == latest, f"state lists {paths}, latest {latest}"
        assert len(paths) <= MAX_TO_KEEP, f"state lists {len(paths)} > max_to_keep={MAX_TO_KEEP}: {paths}"
        listed = [step_of(p) for p in paths]
        assert listed == list(range(listed[0], listed[0] + len(listed))), f"listed steps {listed}"
        for p, s in zip(paths, listed):
            assert fastckpt.checkpoint_exists(p), f"listed checkpoint {p} does not exist"
            _once("verify", p, verify)
            assert int(fastckpt.load_variable(p, "step")) == s, p

        low = listed[0]
        above = {s for s in complete if s > n}
        assert above <= pending and above <= {n + 1}, (
            f"complete checkpoints {sorted(above)} above latest {n} (highest step begun {hist.max_begun})"
        )
        gaps = {s for s in complete if low <= s <= n} - set(listed)
        assert not gaps, f"complete but unlisted checkpoints {sorted(gaps)} inside the kept range {listed}"
        assert len({s for s in complete if s >= low}) <= MAX_TO_KEEP + 1
        orphans = {s for s in complete if s < low}
        assert len(orphans) <= hist.orphans + 1, (
            f"{len(orphans) - hist.orphans} new orphaned checkpoints after one kill: {sorted(orphans)}"
        )
        hist.orphans = len(orphans)

    # Every complete checkpoint is intact, wherever it is (orphans included).
    for s in sorted(complete - set(listed)):
        prefix = os.path.join(d, f"model-{s}")
        _once("verify", prefix, verify)
        assert int(fastckpt.load_variable(prefix, "step")) == s, prefix
    for s, files in data_steps.items():
        if s in complete:
            assert files == {f"model-{s}.data-{i:05d}-of-{SHARDS:05d}" for i in range(SHARDS)}, files
        else:
            # Data without an index: a commit or a deletion cut short. Never the kept range.
            assert s in pending or not listed or s < listed[0], (
                f"data files without index for step {s}: {sorted(files)} (listed {listed})"
            )

    for name in names:
        m = META_RE.match(name)
        if m:
            with open(os.path.join(d, name), "rb") as f:
                MetaGraphDef.FromString(f.read())  # atomic write: never partial

    temps = [x for x in names if ".tempstate" in x]
    for name in temps:
        assert TEMP_RE.match(name), f"temporary file {name} does not have fastckpt's name"
        path = os.path.join(d, name)
        assert _flock_free(path), f"temporary file {name} still locked after its writer died"
        try:
            mtime = os.stat(path).st_mtime
        except FileNotFoundError:
            continue
        late = [step for begin, step in hist.save_spans if begin >= mtime + STALE_AFTER]
        assert not late, (
            f"stale temporary file {name} (mtime {mtime:.3f}) survived the save of "
            f"step(s) {late} that started more than {STALE_AFTER} s later"
        )
    other_tmps = [x for x in names if ".tmp" in x]
    assert not other_tmps, f"temporary files not named by fastckpt's mechanism: {other_tmps}"
    for name in temps:
        final_name = TEMP_RE.match(name).group("final")
        kind = "state" if final_name == "checkpoint" else "meta" if META_RE.match(final_name) else "bundle"
        hist.temps_seen.add((kind, name))
    if final:
        assert not temps, f"temporary files left after a clean save: {temps}"
        for kind in ("state", "meta", "bundle"):
            hist.leftovers[f"{kind} temporary files seen (all removed)"] = sum(
                1 for k, _ in hist.temps_seen if k == kind
            )
        hist.leftovers["steps with data shards but no index"] = len(set(data_steps) - complete)


def _record(run: Run, hist: History) -> None:
    begins = {}
    for e in run.events:
        if e.kind == "begin":
            begins[int(e.arg)] = e.t
            hist.max_begun = int(e.arg) if hist.max_begun is None else max(hist.max_begun, int(e.arg))
        elif e.kind == "saved":
            s = int(e.arg)
            hist.max_saved = s if hist.max_saved is None else max(hist.max_saved, s)
            hist.save_spans.append((begins[s], s))
            hist.durations.append(e.t - begins[s])


def _renamed_this_attempt(d: str, run: Run) -> List[str]:
    """Final data files of the save in progress written by this attempt (an earlier,
    killed attempt at the same step may have left some with older mtimes)."""
    begin = next((e for e in reversed(run.events) if e.kind == "begin"), None)
    if begin is None:
        return []
    out = []
    for n in os.listdir(d):
        if DATA_RE.match(n) and n.startswith(f"model-{begin.arg}."):
            if os.stat(os.path.join(d, n)).st_mtime >= begin.t - 0.05:
                out.append(n)
    return out


def _check_rename_kill(d: str, run: Run, inject: str) -> None:
    """A kill on entry to rename j of a save leaves exactly what 'data, then index' implies."""
    j = (int(inject.split(":")[1]) - 1) % RENAMES_PER_SAVE + 1
    begin = next((e for e in reversed(run.events) if e.kind == "begin"), None)
    assert begin is not None, "killed at a rename before any save began"
    renamed = _renamed_this_attempt(d, run)
    has_index = os.path.exists(os.path.join(d, f"model-{begin.arg}.index"))
    if j <= SHARDS + 1:  # before data rename j (or, j = 4, the index rename)
        assert len(renamed) == j - 1, f"killed before rename {j}: renamed {sorted(renamed)}"
        assert not has_index, f"killed before rename {j}, yet model-{begin.arg}.index exists"
    else:  # the checkpoint was committed; .meta / state file renames were cut
        assert has_index and len(renamed) == SHARDS, f"killed before rename {j}: index missing"
        # The file whose rename was cut is left under its temporary name.
        final_name = f"model-{begin.arg}.meta" if j == SHARDS + 2 else "checkpoint"
        left = [
            n
            for n in os.listdir(d)
            if (m := TEMP_RE.match(n))
            and m.group("final") == final_name
            and os.stat(os.path.join(d, n)).st_mtime >= begin.t - 0.05
        ]  # not an earlier kill's
        assert len(left) == 1, f"killed before rename {j} ({final_name}): temporary files {left}"
        assert _flock_free(os.path.join(d, left[0])), f"{left[0]} still locked after its writer died"
        # Killed on entry to the rename: the temporary file is complete.
        with open(os.path.join(d, left[0]), "rb") as f:
            data = f.read()
        if final_name == "checkpoint":
            state = text_format.Parse(data.decode("utf-8"), CheckpointState())
            assert state.model_checkpoint_path == os.path.join(d, f"model-{begin.arg}"), state
        else:
            assert MetaGraphDef.FromString(data).saver_def.filename_tensor_name, left[0]


def _where(run: Run, d: str, inject: Optional[str]) -> str:
    """Which part of Saver.save the kill interrupted: the last marker seen, refined
    for kills inside the native write by what is on disk (for reporting only)."""
    if inject and inject.startswith("rename:"):
        j = (int(inject.split(":")[1]) - 1) % RENAMES_PER_SAVE + 1
        return "before rename " + {1: "data 1", 2: "data 2", 3: "data 3", 4: "index", 5: ".meta", 6: "state file"}[j]
    if inject:
        return "retention (before unlink " + inject.split(":")[1] + ")"
    last = next((e.kind for e in reversed(run.events) if e.kind != "pid"), "none")
    if last == "begin":
        step = next(e.arg for e in reversed(run.events) if e.kind == "begin")
        names = os.listdir(d)
        renamed = _renamed_this_attempt(d, run)
        temps = [n for n in names if n.startswith(f"model-{step}.") and ".tempstate" in n]
        if f"model-{step}.index" in names:
            return "after commit, before state"
        if renamed and temps:
            return f"commit renames ({len(renamed)} of {SHARDS} data files renamed)"
        return "data write/fsync" if temps else "before the first temp file"
    return {
        "none": "start-up",
        "ready": "array fill",
        "begin": "data write/fsync/rename",
        "written": "after commit, before state",
        "state": "state update",
        "unlink": "retention/deletion",
        "saved": "between saves",
    }.get(last, last)


def test_sigkill_during_saver_loop(tmp_path):
    rng = random.Random(SEED)
    _checked.clear()
    use_strace = _strace_works()
    d = str(tmp_path / "ckpt")
    os.makedirs(d)
    log_path = tmp_path / "worker.log"
    hist = History()
    start = time.monotonic()

    def context(k: int, mode: str, run: Optional[Run]) -> str:
        tail = [f"{e.kind} {e.arg}" for e in run.events[-12:]] if run else []
        return (
            f"[seed={SEED} kill #{k} mode={mode}] worker events (last 12): {tail}; "
            f"dir: {sorted(os.listdir(d))}; worker log: {log_path.read_text()[-2000:]!r}"
        )

    with open(log_path, "ab") as log:
        for k in range(1, KILLS + 1):
            mode = rng.choices(
                ["random", "late", "written", "state", "unlink", "strace-rename", "strace-unlink"],
                weights=[30, 12, 8, 8, 10, 22, 10],
            )[0]
            nth = rng.choice([1, 1, 1, 2])
            inject = None
            if use_strace and k in FORCED_RENAME_KILLS:
                mode, nth = "strace-rename", 1
                inject = f"rename:{FORCED_RENAME_KILLS[k]}"
            elif mode == "strace-rename":
                inject = f"rename:{(nth - 1) * RENAMES_PER_SAVE + rng.randint(1, RENAMES_PER_SAVE)}"
            elif mode == "strace-unlink":
                inject = f"unlink:{rng.randint(1, 5)}"  # .meta, .index, 3 data shards
            if inject and not use_strace:
                mode, inject = "random", None
            run = Run(d, log, inject=inject)
            deadline = time.monotonic() + CYCLE_TIMEOUT
            try:
                ready = run.read_until(lambda e: e.kind == "ready", deadline)
                assert ready is not None, "worker did not start"
                if inject:
                    run.read_until(lambda e: False, deadline)  # until the kernel kills it (EOF)
                    rc = run.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                    assert rc in (-signal.SIGKILL, 128 + signal.SIGKILL), f"worker under strace ended with {rc}"
                elif mode == "random":
                    until = time.monotonic() + rng.uniform(0, 2.5 * hist.estimate())
                    run.read_until(lambda e: False, until)
                elif mode == "late":
                    seen = []
                    ev = run.read_until(lambda e: e.kind == "begin" and len(seen.append(e) or seen) >= nth, deadline)
                    assert ev is not None, "worker never began a save"
                    run.read_until(lambda e: False, time.monotonic() + rng.uniform(0.7, 1.1) * hist.estimate())
                else:
                    seen = []
                    # Retention unlinks start once max_to_keep checkpoints exist; allow a few saves.
                    ev = run.read_until(lambda e: e.kind == mode and len(seen.append(e) or seen) >= nth, deadline)
                    assert ev is not None, f"worker never printed {mode!r}"
                    time.sleep(rng.uniform(0, 0.003 if mode == "state" else 0.001))
                exited = run.proc.poll()
                assert inject or exited is None, f"worker exited by itself with status {exited}"
                run.kill()
                hist.kills += 1
                hist.modes[mode] += 1
                hist.landed[_where(run, d, inject)] += 1
                if inject and inject.startswith("rename:"):
                    _check_rename_kill(d, run, inject)
                _record(run, hist)
                check_invariants(d, hist)
            except (AssertionError, subprocess.TimeoutExpired) as e:
                run.kill()
                label = f"{mode} {inject}" if inject else mode
                raise AssertionError(f"{context(k, label, run)}\n{e}") from None

        # A clean save after the last kill, once every leftover temp file is stale.
        temps = [os.path.join(d, x) for x in os.listdir(d) if ".tempstate" in x]
        newest = max((os.stat(p).st_mtime for p in temps), default=0.0)
        time.sleep(max(0.0, newest + STALE_AFTER - time.time()))
        before = hist.prev_latest
        run = Run(d, log, max_steps=1)
        try:
            run.close()
            assert run.proc.returncode == 0, f"final worker failed with status {run.proc.returncode}"
            _record(run, hist)
            check_invariants(d, hist, final=True)
            expected = 0 if before is None else before + 1
            assert hist.prev_latest == expected, (hist.prev_latest, expected)
        except (AssertionError, subprocess.TimeoutExpired) as e:
            run.kill()
            raise AssertionError(f"{context(KILLS + 1, 'final', run)}\n{e}") from None

    elapsed = time.monotonic() - start
    print(
        f"\ncrash test: seed={SEED}, {hist.kills} kills in {elapsed:.1f} s, {MB} MiB/step, "
        f"median save {hist.estimate():.3f} s, final step {hist.prev_latest}"
    )
    print(f"  kill modes: {dict(hist.modes)}" + ("" if use_strace else " (strace unavailable)"))
    print(f"  kills landed in: {dict(hist.landed)}")
    print(f"  orphaned complete checkpoints (kill between state update and deletion): {hist.orphans}")
    print(f"  leftovers: {dict(hist.leftovers)}")
