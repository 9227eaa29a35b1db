"""fastckpt.checkpoint_management: the ``checkpoint`` state file and checkpoint files.

Two kinds of tests:

* without TensorFlow: exact expected file text, path rules, errors, glob
  semantics, atomic replacement of the state file;
* side by side with TensorFlow (``@pytest.mark.tf``): for the same inputs,
  TensorFlow's ``checkpoint_management`` and ours write the same bytes, read
  the same state, find the same checkpoints, delete the same files.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import errno  # noqa: E402
import pathlib  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from google.protobuf import text_format  # noqa: E402

import fastckpt  # noqa: E402
from fastckpt import _native  # noqa: E402
from fastckpt import _tf_glob as tf_glob  # noqa: E402
from fastckpt import checkpoint_management as cm  # noqa: E402

testing = _native.testing


def _read(path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _make_ckpt(prefix) -> None:
    """A real (tiny) V2 checkpoint at ``prefix``."""
    fastckpt.save({"v": np.float32(1.0)}, str(prefix), durable=False)


def _touch(path, content: bytes = b"x") -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)


def _no_tmp_files(directory) -> bool:
    """No temporary file: fastckpt's (``.tempstate-fastckpt-``) nor TensorFlow's kinds."""
    return not [n for n in os.listdir(directory) if ".tmp" in n or ".tempstate" in n]


# ======================================================================================
# Without TensorFlow
# ======================================================================================


class TestStateFileText:
    def test_relative_save_dir_writes_relative_paths(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        os.mkdir("ckdir")
        cm.update_checkpoint_state(
            "ckdir", "ckdir/model.ckpt-3", ["ckdir/model.ckpt-1", "ckdir/model.ckpt-2", "ckdir/model.ckpt-3"]
        )
        assert _read("ckdir/checkpoint") == (
            'model_checkpoint_path: "model.ckpt-3"\n'
            'all_model_checkpoint_paths: "model.ckpt-1"\n'
            'all_model_checkpoint_paths: "model.ckpt-2"\n'
            'all_model_checkpoint_paths: "model.ckpt-3"\n'
        )

    def test_absolute_save_dir_keeps_absolute_paths(self, tmp_path):
        d = str(tmp_path)
        cm.update_checkpoint_state(d, f"{d}/m-2", [f"{d}/m-1", f"{d}/m-2"])
        assert _read(tmp_path / "checkpoint") == (
            f'model_checkpoint_path: "{d}/m-2"\n'
            f'all_model_checkpoint_paths: "{d}/m-1"\n'
            f'all_model_checkpoint_paths: "{d}/m-2"\n'
        )

    def test_absolute_save_dir_save_relative_paths(self, tmp_path):
        d = str(tmp_path)
        cm.update_checkpoint_state(d, f"{d}/m-2", [f"{d}/m-1", f"{d}/m-2"], save_relative_paths=True)
        assert _read(tmp_path / "checkpoint") == (
            'model_checkpoint_path: "m-2"\nall_model_checkpoint_paths: "m-1"\nall_model_checkpoint_paths: "m-2"\n'
        )

    def test_absolute_paths_of_other_directories_left_alone(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        os.mkdir("ckdir")
        cm.update_checkpoint_state("ckdir", "ckdir/m-2", ["/other/place/m-1", "ckdir/m-2"])
        assert _read("ckdir/checkpoint") == (
            'model_checkpoint_path: "m-2"\n'
            'all_model_checkpoint_paths: "/other/place/m-1"\n'
            'all_model_checkpoint_paths: "m-2"\n'
        )

    def test_model_path_appended_and_input_list_untouched(self, tmp_path):
        d = str(tmp_path)
        paths = [f"{d}/m-1"]
        cm.update_checkpoint_state(d, f"{d}/m-2", paths)
        assert paths == [f"{d}/m-1"]
        assert _read(tmp_path / "checkpoint") == (
            f'model_checkpoint_path: "{d}/m-2"\n'
            f'all_model_checkpoint_paths: "{d}/m-1"\n'
            f'all_model_checkpoint_paths: "{d}/m-2"\n'
        )

    def test_no_path_list(self, tmp_path):
        cm.update_checkpoint_state(str(tmp_path), "m-1")
        assert _read(tmp_path / "checkpoint") == ('model_checkpoint_path: "m-1"\nall_model_checkpoint_paths: "m-1"\n')

    def test_timestamps_and_last_preserved(self, tmp_path):
        d = str(tmp_path)
        cm.update_checkpoint_state_internal(
            d,
            f"{d}/ckpt-100",
            [f"{d}/ckpt-5", f"{d}/ckpt-100"],
            save_relative_paths=True,
            all_model_checkpoint_timestamps=[1795627837.834448, 1.0],
            last_preserved_timestamp=0.1 + 0.2,
        )
        assert _read(tmp_path / "checkpoint") == (
            'model_checkpoint_path: "ckpt-100"\n'
            'all_model_checkpoint_paths: "ckpt-5"\n'
            'all_model_checkpoint_paths: "ckpt-100"\n'
            "all_model_checkpoint_timestamps: 1795627837.834448\n"
            "all_model_checkpoint_timestamps: 1.0\n"
            "last_preserved_timestamp: 0.30000000000000004\n"
        )

    def test_zero_last_preserved_timestamp_not_written(self, tmp_path):
        cm.update_checkpoint_state(str(tmp_path), "m-1", None, None, [0.0], 0.0)
        assert _read(tmp_path / "checkpoint") == (
            'model_checkpoint_path: "m-1"\nall_model_checkpoint_paths: "m-1"\nall_model_checkpoint_timestamps: 0.0\n'
        )

    def test_latest_filename(self, tmp_path):
        cm.update_checkpoint_state(str(tmp_path), "m-1", latest_filename="state")
        assert os.listdir(tmp_path) == ["state"]
        assert cm.get_checkpoint_state(str(tmp_path), "state").model_checkpoint_path == os.path.join(
            str(tmp_path), "m-1"
        )
        assert cm.get_checkpoint_state(str(tmp_path)) is None

    def test_escaping(self, tmp_path):
        cm.update_checkpoint_state(str(tmp_path), 'a"b\\c\nd')
        assert _read(tmp_path / "checkpoint") == (
            'model_checkpoint_path: "a\\"b\\\\c\\nd"\nall_model_checkpoint_paths: "a\\"b\\\\c\\nd"\n'
        )
        st = cm.get_checkpoint_state(tmp_path)
        assert st.model_checkpoint_path == os.path.join(str(tmp_path), 'a"b\\c\nd')

    def test_pathlike_arguments(self, tmp_path):
        cm.update_checkpoint_state(tmp_path, tmp_path / "m-1", [tmp_path / "m-1"])
        assert cm.get_checkpoint_state(tmp_path).model_checkpoint_path == str(tmp_path / "m-1")

    def test_generate_proto(self):
        st = cm.generate_checkpoint_state_proto("ckdir", "ckdir/m-2", ("ckdir/m-1",), [1.0, 2.0], 3.0)
        assert isinstance(st, cm.CheckpointState)
        assert st.model_checkpoint_path == "m-2"
        assert list(st.all_model_checkpoint_paths) == ["m-1", "m-2"]
        assert list(st.all_model_checkpoint_timestamps) == [1.0, 2.0]
        assert st.last_preserved_timestamp == 3.0

    def test_state_file_is_world_readable_like_tf(self, tmp_path):
        old = os.umask(0o022)
        try:
            cm.update_checkpoint_state(str(tmp_path), "m-1")
        finally:
            os.umask(old)
        assert os.stat(tmp_path / "checkpoint").st_mode & 0o777 == 0o644


class TestUpdateErrors:
    def test_timestamps_mismatch(self, tmp_path):
        with pytest.raises(ValueError, match="timestamps"):
            cm.update_checkpoint_state(str(tmp_path), "m-2", ["m-1"], all_model_checkpoint_timestamps=[1.0])
        assert os.listdir(tmp_path) == []

    def test_conflict_with_state_file(self, tmp_path):
        with pytest.raises(RuntimeError, match="conflicts"):
            cm.update_checkpoint_state(str(tmp_path), os.path.join(str(tmp_path), "checkpoint"))
        with pytest.raises(RuntimeError, match="conflicts"):
            cm.update_checkpoint_state(str(tmp_path), os.path.join(str(tmp_path), "st"), latest_filename="st")
        assert os.listdir(tmp_path) == []

    def test_missing_directory(self, tmp_path):
        # ENOENT is a CheckpointNotFoundError (a FileNotFoundError), as in the native core.
        with pytest.raises(fastckpt.CheckpointNotFoundError) as e:
            cm.update_checkpoint_state(str(tmp_path / "missing"), "m-1")
        assert isinstance(e.value, OSError)
        assert e.value.errno == errno.ENOENT
        assert "missing/checkpoint" in str(e.value)


class TestAtomicity:
    """The state file is replaced through the native core's locked temporary
    file (fastckpt._native.write_file_atomically); failures are injected at
    its OS calls with the fault hook (fastckpt._native.testing)."""

    @pytest.fixture(autouse=True)
    def _disarm(self):
        testing.disarm_faults()
        yield
        testing.disarm_faults()

    @pytest.mark.parametrize(
        "point,err,cls,step",
        [
            ("create", errno.EACCES, fastckpt.CheckpointPermissionError, "cannot create"),
            ("write", errno.ENOSPC, fastckpt.CheckpointIOError, "write failed on"),
            ("sync", errno.EIO, fastckpt.CheckpointIOError, "fsync failed on"),
            ("rename", errno.EIO, fastckpt.CheckpointIOError, "cannot rename the temporary file into place as"),
        ],
    )
    def test_failure_before_the_rename_keeps_old_file(self, tmp_path, point, err, cls, step):
        d = str(tmp_path)
        cm.update_checkpoint_state(d, "m-1")
        before = (tmp_path / "checkpoint").read_bytes()
        state_file = os.path.join(d, "checkpoint")
        testing.arm_fault(point, 0, err)
        with pytest.raises(cls) as info:
            cm.update_checkpoint_state(d, "m-2", ["m-1", "m-2"])
        assert testing.fault_hits() == 1
        testing.disarm_faults()
        e = info.value
        assert type(e) is cls
        assert (e.errno, e.strerror, e.filename) == (err, os.strerror(err), state_file)
        assert str(e) == f"cannot write checkpoint state file: {step} '{state_file}': {os.strerror(err)}"
        assert (tmp_path / "checkpoint").read_bytes() == before
        assert os.listdir(tmp_path) == ["checkpoint"]  # no temporary file left

    @pytest.mark.parametrize("point,named", [("close", "file"), ("sync_dir", "dir")])
    def test_failure_after_the_rename_reports_with_new_file_in_place(self, tmp_path, point, named):
        d = str(tmp_path)
        cm.update_checkpoint_state(d, "m-1")
        testing.arm_fault(point, 0, errno.EIO)
        with pytest.raises(fastckpt.CheckpointIOError) as info:
            cm.update_checkpoint_state(d, "m-2", ["m-1", "m-2"])
        testing.disarm_faults()
        e = info.value
        state_file = os.path.join(d, "checkpoint")
        want = {"file": ("close failed on", state_file), "dir": ("fsync failed on directory", d)}[named]
        assert (e.errno, e.strerror, e.filename) == (errno.EIO, os.strerror(errno.EIO), want[1])
        assert str(e) == f"cannot write checkpoint state file: {want[0]} '{want[1]}': {os.strerror(errno.EIO)}"
        assert cm.get_checkpoint_state(d).model_checkpoint_path == os.path.join(d, "m-2")
        assert os.listdir(tmp_path) == ["checkpoint"]

    def test_failed_write_keeps_old_file_byte_for_byte(self, tmp_path):
        cm.update_checkpoint_state(str(tmp_path), "m-1")
        before = (tmp_path / "checkpoint").read_bytes()
        testing.arm_fault("write", 0, errno.ENOSPC)
        with pytest.raises(fastckpt.CheckpointIOError) as e:
            cm.update_checkpoint_state(str(tmp_path), "m-2")
        testing.disarm_faults()
        assert e.value.errno == errno.ENOSPC
        assert (tmp_path / "checkpoint").read_bytes() == before
        assert _no_tmp_files(tmp_path)

    @pytest.mark.parametrize("durable", [True, False])
    @pytest.mark.parametrize("point", ["sync", "sync_dir"])
    def test_fsync_only_when_durable(self, tmp_path, durable, point):
        testing.arm_fault(point, 10**9, 0)  # counts calls only
        cm.update_checkpoint_state(str(tmp_path), "m-1", durable=durable)
        assert testing.fault_hits() == (1 if durable else 0)  # the file, then the directory
        testing.disarm_faults()
        assert _read(tmp_path / "checkpoint").startswith('model_checkpoint_path: "m-1"')

    def test_one_create_write_rename_close_per_update(self, tmp_path):
        for point in ("create", "write", "rename", "close"):
            testing.arm_fault(point, 10**9, 0)
            cm.update_checkpoint_state(str(tmp_path), "m-1")
            assert testing.fault_hits() == 1, point
            testing.disarm_faults()

    def test_overwrite_in_place(self, tmp_path):
        for i in range(5):
            cm.update_checkpoint_state(str(tmp_path), f"m-{i}", durable=False)
        assert os.listdir(tmp_path) == ["checkpoint"]
        assert cm.latest_checkpoint(tmp_path) is None  # files do not exist
        assert cm.get_checkpoint_state(tmp_path).model_checkpoint_path.endswith("m-4")


class TestGetCheckpointState:
    def test_missing(self, tmp_path):
        assert cm.get_checkpoint_state(str(tmp_path)) is None
        assert cm.get_checkpoint_state(str(tmp_path / "nope")) is None

    def test_relative_paths_joined_absolute_kept(self, tmp_path):
        _touch(
            str(tmp_path / "checkpoint"),
            b'model_checkpoint_path: "m-2"\nall_model_checkpoint_paths: "/abs/m-1"\n'
            b'all_model_checkpoint_paths: "m-2"\n',
        )
        st = cm.get_checkpoint_state(str(tmp_path) + "/")
        assert st.model_checkpoint_path == str(tmp_path) + "/m-2"
        assert list(st.all_model_checkpoint_paths) == ["/abs/m-1", str(tmp_path) + "/m-2"]

    def test_lenient_merge(self, tmp_path):
        # text_format.Merge: a repeated singular field keeps the last value.
        _touch(
            str(tmp_path / "checkpoint"),
            b'model_checkpoint_path: "a"\nmodel_checkpoint_path: "b" # comment\n'
            b"all_model_checkpoint_timestamps: [1, 2.5]\n",
        )
        st = cm.get_checkpoint_state(str(tmp_path))
        assert st.model_checkpoint_path == os.path.join(str(tmp_path), "b")
        assert list(st.all_model_checkpoint_timestamps) == [1.0, 2.5]
        assert list(st.all_model_checkpoint_paths) == []

    @pytest.mark.parametrize("content", [b"", b'all_model_checkpoint_paths: "x"\n', b'model_checkpoint_path: ""\n'])
    def test_no_model_path_is_valueerror(self, tmp_path, content):
        _touch(str(tmp_path / "checkpoint"), content)
        with pytest.raises(ValueError, match="Invalid checkpoint state loaded from"):
            cm.get_checkpoint_state(str(tmp_path))
        with pytest.raises(ValueError):
            cm.latest_checkpoint(str(tmp_path))

    @pytest.mark.parametrize(
        "content",
        [b"garbage", b"unknown_field: 1\n", b"model_checkpoint_path: 5\n", b'model_checkpoint_path: "unterminated\n'],
    )
    def test_unparsable_is_none(self, tmp_path, content):
        _touch(str(tmp_path / "checkpoint"), content)
        assert cm.get_checkpoint_state(str(tmp_path)) is None
        assert cm.latest_checkpoint(str(tmp_path)) is None

    def test_not_utf8_raises(self, tmp_path):
        _touch(str(tmp_path / "checkpoint"), b"\xff\xfe")
        with pytest.raises(UnicodeDecodeError):
            cm.get_checkpoint_state(str(tmp_path))

    def test_directory_named_checkpoint_is_none(self, tmp_path):
        os.mkdir(tmp_path / "checkpoint")
        assert cm.get_checkpoint_state(str(tmp_path)) is None

    def test_unreadable_is_none(self, tmp_path, monkeypatch):
        _touch(str(tmp_path / "checkpoint"), b'model_checkpoint_path: "m"\n')

        def denied(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied", args[0])

        monkeypatch.setattr(cm, "open", denied, raising=False)  # works even as root
        assert cm.get_checkpoint_state(str(tmp_path)) is None


class TestLatestCheckpoint:
    def test_v2(self, tmp_path):
        d = str(tmp_path)
        _make_ckpt(f"{d}/model.ckpt-1")
        _make_ckpt(f"{d}/model.ckpt-2")
        cm.update_checkpoint_state(d, f"{d}/model.ckpt-2", [f"{d}/model.ckpt-1", f"{d}/model.ckpt-2"])
        assert cm.latest_checkpoint(d) == f"{d}/model.ckpt-2"
        assert fastckpt.load(cm.latest_checkpoint(d))["v"] == np.float32(1.0)

    def test_relative(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        _make_ckpt("ckdir/m-7")
        cm.update_checkpoint_state("ckdir", "ckdir/m-7")
        assert cm.latest_checkpoint("ckdir") == "ckdir/m-7"
        assert cm.latest_checkpoint("ckdir/") == "ckdir/m-7"
        assert cm.latest_checkpoint(pathlib.Path("ckdir")) == "ckdir/m-7"

    def test_missing_files(self, tmp_path):
        cm.update_checkpoint_state(str(tmp_path), "m-1")
        assert cm.latest_checkpoint(str(tmp_path)) is None

    def test_no_state_file(self, tmp_path):
        _make_ckpt(str(tmp_path / "m-1"))
        assert cm.latest_checkpoint(str(tmp_path)) is None

    def test_v1_file(self, tmp_path):
        _touch(str(tmp_path / "m-1"))
        cm.update_checkpoint_state(str(tmp_path), "m-1")
        assert cm.latest_checkpoint(str(tmp_path)) == os.path.join(str(tmp_path), "m-1")

    def test_glob_characters_in_directory_name(self, tmp_path):
        # As in TensorFlow, "run[1]/m.index" is a pattern: it matches run1/m.index.
        d = str(tmp_path / "run[1]")
        _make_ckpt(f"{d}/m")
        cm.update_checkpoint_state(d, f"{d}/m")
        assert cm.latest_checkpoint(d) is None
        _touch(str(tmp_path / "run1" / "m.index"))
        assert cm.latest_checkpoint(d) == f"{d}/m"


class TestCheckpointFiles:
    def test_checkpoint_exists(self, tmp_path):
        d = str(tmp_path)
        _make_ckpt(f"{d}/m-1")
        _touch(f"{d}/v1")
        assert cm.checkpoint_exists(f"{d}/m-1")
        assert cm.checkpoint_exists(pathlib.Path(d) / "m-1")
        assert cm.checkpoint_exists(f"{d}/m-?")
        assert cm.checkpoint_exists(f"{d}/v1")
        assert not cm.checkpoint_exists(f"{d}/m-2")
        assert not cm.checkpoint_exists(f"{d}/m")
        assert cm.checkpoint_exists_internal(f"{d}/m-1")

    def test_get_checkpoint_mtimes(self, tmp_path):
        d = str(tmp_path)
        _make_ckpt(f"{d}/m-1")
        _touch(f"{d}/v1")
        os.utime(f"{d}/m-1.index", ns=(1_600_000_000_900_000_000, 1_600_000_000_900_000_000))
        os.utime(f"{d}/v1", ns=(1_500_000_000_000_000_001, 1_500_000_000_000_000_001))
        assert cm.get_checkpoint_mtimes([f"{d}/m-1", f"{d}/missing", f"{d}/v1"]) == [1_600_000_000.0, 1_500_000_000.0]
        assert cm.get_checkpoint_mtimes([]) == []

    def test_remove_checkpoint_v2(self, tmp_path):
        d = str(tmp_path)
        for name in [
            "m-1.index",
            "m-1.data-00000-of-00002",
            "m-1.data-00001-of-00002",
            "m-1.meta",
            "m-1.data-00000-of-00001.tempstate123",
            "m-1.data-0000-of-00001",
            "m-10.index",
            "m-1",
            "m-1.txt",
            "checkpoint",
        ]:
            _touch(f"{d}/{name}")
        cm.remove_checkpoint(f"{d}/m-1")
        assert sorted(os.listdir(d)) == sorted(
            [
                "m-1.data-00000-of-00001.tempstate123",
                "m-1.data-0000-of-00001",
                "m-10.index",
                "m-1",
                "m-1.txt",
                "checkpoint",
            ]
        )

    def test_remove_checkpoint_v1_and_suffix(self, tmp_path):
        d = str(tmp_path)
        for name in ["m-1", "m-1.index", "m-1.meta", "m-1.graph"]:
            _touch(f"{d}/{name}")
        cm.remove_checkpoint(f"{d}/m-1", cm.V1, meta_graph_suffix="graph")
        assert sorted(os.listdir(d)) == ["m-1.index", "m-1.meta"]

    def test_remove_missing_is_noop(self, tmp_path):
        cm.remove_checkpoint(str(tmp_path / "m-1"))

    def test_remove_directory_match_raises(self, tmp_path):
        os.mkdir(tmp_path / "m-1.index")
        with pytest.raises(fastckpt.CheckpointIOError, match="m-1.index"):
            cm.remove_checkpoint(str(tmp_path / "m-1"))

    @pytest.mark.parametrize(
        "name,expected",
        [
            ("model.ckpt-7", "model.ckpt-7.meta"),
            ("model.ckpt-7-00001-of-00002", "model.ckpt-7.meta"),
            ("model.ckpt-7-?????-of-00002", "model.ckpt-7.meta"),
            ("d/model-of-3", "d/model-of-3.meta"),
        ],
    )
    def test_meta_graph_filename(self, name, expected):
        assert cm.meta_graph_filename(name) == expected
        assert cm.meta_graph_filename(name, "pb") == expected[:-4] + "pb"


class TestGlob:
    def test_semantics(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        for name in ["d/a.index", "d/.h.index", "d/run[1]/m.index", "d/run1/m.index", "d/x/y/z.index"]:
            _touch(name)
        g = lambda p: sorted(cm.get_matching_files(p))  # noqa: E731
        assert g("d/a.index") == ["d/a.index"]
        assert g("d/nope") == []
        assert g("d/*.index") == ["d/.h.index", "d/a.index"]  # '*' matches a leading dot
        assert g("d/*") == ["d/.h.index", "d/a.index", "d/run1", "d/run[1]", "d/x"]
        assert g("d/run[1]/m.index") == ["d/run1/m.index"]
        assert g("d/run\\[1\\]/m.index") == ["d/run[1]/m.index"]
        assert g("d/run[!1]*/m.index") == ["d/run[1]/m.index"]
        assert g("d/*/*/z.index") == ["d/x/y/z.index"]
        assert g("d/*.index/") == ["d/.h.index", "d/a.index"]  # trailing '/' dropped, files kept
        assert g("d/a.index/") == ["d/a.index/"]  # lexical clean-up before access(), as TF
        assert g("d/*z.index") == []  # '*' does not cross '/'
        assert g("*") == ["./d"]
        assert g("") == []
        assert g("nothere/*") == []
        assert g("d/nothere/../a.index") == ["d/nothere/../a.index"]  # lexical clean-up, as TF

    @pytest.mark.skipif(tf_glob._libc_fnmatch() is None, reason="no C library fnmatch")
    def test_portable_matcher_agrees_with_libc(self):
        libc = tf_glob._libc_fnmatch()
        names = [
            "a",
            "ab",
            "abc",
            "a/b",
            ".a",
            "a.index",
            "run[1]",
            "run1",
            "x-y",
            "]",
            "[",
            "a\\b",
            "!",
            "^",
            "-",
            "a-1-of-2",
            "ä",
            "A9",
            " ",
        ]
        patterns = [
            "*",
            "?",
            "a*",
            "*b",
            "a?c",
            "a/*",
            "*/b",
            "[ab]",
            "[!a]",
            "[^a]",
            "[]]",
            "[!]]",
            "[a-c]*",
            "[z-a]",
            "run[1]",
            "run\\[1\\]",
            "[",
            "[a",
            "a\\",
            "\\a",
            "[\\]]",
            "[[:alpha:]]*",
            "[[:digit:]]",
            "[[:bogus:]]",
            "[a-]",
            "[-a]",
            "?*?",
            "*[!/]",
            "[*]",
            "x[-]y",
            "[!!]",
            "[^^]",
            "A[[:digit:]]",
            "[[:space:]]",
        ]
        for p in patterns:
            for n in names:
                if not n.isascii():
                    continue  # glibc's multibyte matching has its own quirks ("??" matches "ä")
                assert tf_glob._python_fnmatch(n, p) == libc(n, p), (n, p)


# ======================================================================================
# Side by side with TensorFlow
# ======================================================================================


@pytest.fixture(scope="module")
def tfcm():
    """TensorFlow's checkpoint_management module."""
    import tensorflow as tf
    from tensorflow.python.checkpoint import checkpoint_management as tf_cm

    tf.get_logger().setLevel("ERROR")
    return tf_cm


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


def _tf_state_bytes(tfcm, save_dir, state_name, call) -> bytes:
    path = os.path.join(save_dir, state_name or "checkpoint")
    if os.path.exists(path):
        os.remove(path)
    call()
    with open(path, "rb") as f:
        data = f.read()
    os.remove(path)
    return data


# (save_dir, model_checkpoint_path, all_model_checkpoint_paths, latest_filename,
#  timestamps, last_preserved, save_relative_paths); "@" is replaced by the absolute
# temporary directory.
UPDATE_CASES = [
    ("ckdir", "ckdir/model.ckpt-3", ["ckdir/model.ckpt-1", "ckdir/model.ckpt-3"], None, None, None, False),
    ("ckdir", "ckdir/model.ckpt-3", ["ckdir/model.ckpt-1"], None, None, None, False),
    ("ckdir", "ckdir/model.ckpt-3", None, None, None, None, False),
    ("ckdir/", "ckdir/m-1", None, None, None, None, False),
    ("./ckdir", "ckdir/m-1", ["./ckdir/m-0", "ckdir/m-1"], None, None, None, False),
    ("ckdir", "ckdir/m-2", ["/other/place/m-1", "ckdir/m-2"], None, None, None, False),
    ("ckdir", "ckdir/sub/m-2", ["ckdir/sub/m-2"], None, None, None, False),
    ("ckdir", "m-2", ["other/m-1", "m-2"], None, None, None, False),
    ("ckdir", "ckdir/m-2", ["ckdir/m-2"], "state", None, None, False),
    ("@/ckdir", "@/ckdir/m-2", ["@/ckdir/m-1", "@/ckdir/m-2"], None, None, None, False),
    ("@/ckdir", "@/ckdir/m-2", ["@/ckdir/m-1", "@/ckdir/m-2"], None, None, None, True),
    ("@/ckdir", "@/ckdir/m-2", ["@/ckdir/m-1", "/other/m-0", "@/ckdir/m-2"], None, None, None, True),
    ("@/ckdir", "m-2", ["m-1", "m-2"], None, None, None, False),
    ("@/ckdir", "@/ckdir/m-2", ["@/ckdir/m-1"], "my_state", [1.5, 1e20], 0.1 + 0.2, True),
    ("@/ckdir", "@/ckdir/m-2", ["@/ckdir/m-1", "@/ckdir/m-2"], None, [0.0, 1795627837.834448], 0.0, True),
    ("@/ckdir", "@/ckdir/m-2", ["@/ckdir/m-1", "@/ckdir/m-2"], None, None, 1795627836.7992344, False),
    # relative save_dir with save_relative_paths: an absolute path is made relative twice (TF quirk)
    ("ckdir", "@/ckdir/m-2", ["@/ckdir/m-1", "ckdir/m-2"], None, None, None, True),
    ("ckdir", "ckdir/m-2", ["ckdir/m-2"], None, [7.0], None, True),
    ("@/ckdir", '@/ckdir/m é"\\\n\t-1', None, None, None, None, False),
    ("", "m-1", None, None, None, None, False),
]


def _subst(value, root):
    if isinstance(value, str):
        return value.replace("@", root)
    if isinstance(value, list):
        return [_subst(v, root) for v in value]
    return value


@pytest.mark.tf
@pytest.mark.parametrize("case", UPDATE_CASES, ids=[str(i) for i in range(len(UPDATE_CASES))])
def test_update_state_bytes_equal_tf_internal(tfcm, tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    os.mkdir("ckdir")
    save_dir, model, paths, latest, stamps, last, rel = _subst(list(case), str(tmp_path))
    state_dir = save_dir or "."

    def theirs():
        tfcm.update_checkpoint_state_internal(
            save_dir,
            model,
            all_model_checkpoint_paths=None if paths is None else list(paths),
            latest_filename=latest,
            save_relative_paths=rel,
            all_model_checkpoint_timestamps=stamps,
            last_preserved_timestamp=last,
        )

    def ours():
        cm.update_checkpoint_state_internal(
            save_dir,
            model,
            all_model_checkpoint_paths=paths,
            latest_filename=latest,
            save_relative_paths=rel,
            all_model_checkpoint_timestamps=stamps,
            last_preserved_timestamp=last,
        )

    if rel and paths is None:
        # TensorFlow fails here (it iterates the None list, a bug); fastckpt
        # writes a state naming the one checkpoint, relative to the directory.
        with pytest.raises(TypeError):
            theirs()
        ours()
        state = tfcm.get_checkpoint_state(state_dir, latest_filename=latest)
        assert state.model_checkpoint_path == os.path.join(os.path.abspath(state_dir), os.path.basename(model))
        assert list(state.all_model_checkpoint_paths) == [state.model_checkpoint_path]
        return
    expected = _tf_state_bytes(tfcm, state_dir, latest, theirs)
    got = _tf_state_bytes(tfcm, state_dir, latest, ours)
    assert got == expected
    # The public signature (save_relative_paths comes last) gives the same bytes.
    got2 = _tf_state_bytes(
        tfcm,
        state_dir,
        latest,
        lambda: cm.update_checkpoint_state(save_dir, model, paths, latest, stamps, last, rel, durable=False),
    )
    assert got2 == expected
    # Each reads the other's file the same way.
    _tf_state_bytes(tfcm, state_dir, latest, ours)  # (removes it again)
    ours()
    a = tfcm.get_checkpoint_state(save_dir, latest)
    b = cm.get_checkpoint_state(save_dir, latest)
    assert text_format.MessageToString(a) == text_format.MessageToString(b)


@pytest.mark.tf
@pytest.mark.parametrize(
    "case", [c for c in UPDATE_CASES if not c[6]], ids=[str(i) for i, c in enumerate(UPDATE_CASES) if not c[6]]
)
def test_update_state_bytes_equal_tf_public(tf, tfcm, tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    os.mkdir("ckdir")
    save_dir, model, paths, latest, stamps, last, _ = _subst(list(case), str(tmp_path))
    state_dir = save_dir or "."
    expected = _tf_state_bytes(
        tfcm,
        state_dir,
        latest,
        lambda: tf.compat.v1.train.update_checkpoint_state(
            save_dir, model, None if paths is None else list(paths), latest, stamps, last
        ),
    )
    got = _tf_state_bytes(
        tfcm, state_dir, latest, lambda: cm.update_checkpoint_state(save_dir, model, paths, latest, stamps, last)
    )
    assert got == expected
    st_tf = tf.compat.v1.train.generate_checkpoint_state_proto(
        save_dir, model, None if paths is None else list(paths), stamps, last
    )
    st = cm.generate_checkpoint_state_proto(save_dir, model, paths, stamps, last)
    assert text_format.MessageToString(st) == text_format.MessageToString(st_tf)


@pytest.mark.tf
def test_update_errors_match_tf(tfcm, tmp_path):
    d = str(tmp_path)
    cases = [
        dict(
            save_dir=d,
            model_checkpoint_path="m-2",
            all_model_checkpoint_paths=["m-1"],
            all_model_checkpoint_timestamps=[1.0],
        ),
        dict(save_dir=d, model_checkpoint_path=os.path.join(d, "checkpoint")),
        dict(save_dir=d, model_checkpoint_path=os.path.join(d, "st"), latest_filename="st"),
        dict(save_dir="", model_checkpoint_path="checkpoint"),
        dict(save_dir="rel", model_checkpoint_path=""),
    ]
    for kwargs in cases:
        with pytest.raises(Exception) as theirs:
            tfcm.update_checkpoint_state_internal(**kwargs)
        with pytest.raises(Exception) as ours:
            cm.update_checkpoint_state_internal(**kwargs)
        assert isinstance(ours.value, fastckpt.FastCkptError), kwargs
        assert _builtin_class(ours.value) is type(theirs.value), kwargs
    assert os.listdir(d) == []


@pytest.mark.tf
def test_update_no_conflict_cases_match_tf(tfcm, tmp_path, monkeypatch):
    # A relative save_dir rewrites "d/checkpoint" to "checkpoint", so TF's conflict check
    # does not fire and the state file names itself; ours does the same.
    monkeypatch.chdir(tmp_path)
    os.mkdir("d")
    expected = _tf_state_bytes(tfcm, "d", None, lambda: tfcm.update_checkpoint_state_internal("d", "d/checkpoint"))
    got = _tf_state_bytes(tfcm, "d", None, lambda: cm.update_checkpoint_state_internal("d", "d/checkpoint"))
    assert got == expected == (b'model_checkpoint_path: "checkpoint"\nall_model_checkpoint_paths: "checkpoint"\n')
    # Likewise an absolute save_dir with a relative model path "checkpoint".
    d = str(tmp_path / "d")
    for rel in (False, True):
        expected = _tf_state_bytes(
            tfcm, d, None, lambda: tfcm.update_checkpoint_state_internal(d, "checkpoint", [], save_relative_paths=rel)
        )
        got = _tf_state_bytes(
            tfcm, d, None, lambda: cm.update_checkpoint_state_internal(d, "checkpoint", [], save_relative_paths=rel)
        )
        assert got == expected


@pytest.mark.tf
def test_saver_state_file_reproduced(tf, tmp_path, monkeypatch):
    """tf.compat.v1.train.Saver's own state file, relative and absolute save paths."""
    monkeypatch.chdir(tmp_path)
    for base, rel_flag in [
        ("ckdir/model.ckpt", False),
        (str(tmp_path / "abs" / "model.ckpt"), False),
        (str(tmp_path / "absrel" / "model.ckpt"), True),
    ]:
        save_dir = os.path.dirname(base)
        os.makedirs(save_dir, exist_ok=True)
        with tf.Graph().as_default():
            v = tf.compat.v1.Variable(1.0, name="v")
            saver = tf.compat.v1.train.Saver(max_to_keep=2, save_relative_paths=rel_flag)
            with tf.compat.v1.Session() as sess:
                sess.run(v.initializer)
                for step in (1, 2, 3):
                    saver.save(sess, base, global_step=step, write_meta_graph=False)
                kept = list(saver.last_checkpoints)
        expected = (pathlib.Path(save_dir) / "checkpoint").read_bytes()
        os.remove(os.path.join(save_dir, "checkpoint"))
        cm.update_checkpoint_state(save_dir, kept[-1], kept, save_relative_paths=rel_flag)
        assert (pathlib.Path(save_dir) / "checkpoint").read_bytes() == expected
        assert cm.latest_checkpoint(save_dir) == tf.train.latest_checkpoint(save_dir) == kept[-1]
        assert [os.path.exists(p + ".index") for p in (f"{base}-1", f"{base}-2", f"{base}-3")] == [False, True, True]


@pytest.mark.tf
def test_checkpoint_manager_state_file_reproduced(tf, tmp_path):
    d = str(tmp_path / "mgr")
    ckpt = tf.train.Checkpoint(v=tf.Variable(1.0))
    manager = tf.train.CheckpointManager(ckpt, d, max_to_keep=2)
    for _ in range(3):
        manager.save()
    expected = (tmp_path / "mgr" / "checkpoint").read_bytes()
    st = cm.get_checkpoint_state(d)
    assert st.all_model_checkpoint_timestamps  # the manager writes timestamps
    os.remove(os.path.join(d, "checkpoint"))
    cm.update_checkpoint_state_internal(
        d,
        st.model_checkpoint_path,
        list(st.all_model_checkpoint_paths),
        save_relative_paths=True,
        all_model_checkpoint_timestamps=list(st.all_model_checkpoint_timestamps),
        last_preserved_timestamp=st.last_preserved_timestamp,
    )
    assert (tmp_path / "mgr" / "checkpoint").read_bytes() == expected
    assert cm.latest_checkpoint(d) == tf.train.latest_checkpoint(d) == manager.latest_checkpoint
    # TF's manager resumes from our file.
    manager2 = tf.train.CheckpointManager(ckpt, d, max_to_keep=2)
    assert manager2.checkpoints == manager.checkpoints


READ_CASES = [
    b'model_checkpoint_path: "m-2"\nall_model_checkpoint_paths: "m-1"\nall_model_checkpoint_paths: "m-2"\n',
    b'model_checkpoint_path: "/abs/m-2"\nall_model_checkpoint_paths: "rel/m-1"\n',
    b'model_checkpoint_path: "m"\nall_model_checkpoint_timestamps: 1.5\nlast_preserved_timestamp: 2\n',
    b'model_checkpoint_path: "a"  model_checkpoint_path: "b"\n',
    b"model_checkpoint_path: 'single'\n",
    b'model_checkpoint_path: "caf\\303\\251"\n',
    b'model_checkpoint_path: "bad\\377utf8"\n',
    b'model_checkpoint_path: "m" last_preserved_timestamp: inf\n',
    b'model_checkpoint_path: "m"\n\n# trailing comment',
    b"",
    b'all_model_checkpoint_paths: "m"\n',
    b'model_checkpoint_path: ""\n',
    b"garbage",
    b"model_checkpoint_path: 3\n",
    b'unknown: "x"\n',
    b"\xff\xfe",
    'model_checkpoint_path: "é"\n'.encode("utf-8"),
]


def _builtin_class(e):
    """The built-in class an exception is, for comparing ours (a FastCkptError
    that is also the class TensorFlow raises) with TensorFlow's."""
    return next(c for c in type(e).__mro__ if c.__module__ == "builtins")


def _outcome(fn):
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - compared by type
        return ("raises", _builtin_class(e))
    if result is None:
        return ("none",)
    if isinstance(result, str):
        return ("str", result)
    return ("state", text_format.MessageToString(result))


@pytest.mark.tf
@pytest.mark.parametrize("content", READ_CASES, ids=[str(i) for i in range(len(READ_CASES))])
@pytest.mark.parametrize("dirform", ["abs", "rel", "rel/", "pathlike"])
def test_get_checkpoint_state_matches_tf(tfcm, tmp_path, monkeypatch, content, dirform):
    monkeypatch.chdir(tmp_path)
    _touch("d/checkpoint", content)
    d = {"abs": str(tmp_path / "d"), "rel": "d", "rel/": "d/", "pathlike": pathlib.Path("d")}[dirform]
    assert _outcome(lambda: cm.get_checkpoint_state(d)) == _outcome(lambda: tfcm.get_checkpoint_state(d))
    assert _outcome(lambda: cm.latest_checkpoint(d)) == _outcome(lambda: tfcm.latest_checkpoint(d))


@pytest.mark.tf
def test_get_checkpoint_state_special_files_match_tf(tfcm, tmp_path):
    d = str(tmp_path)
    assert cm.get_checkpoint_state(d) is None and tfcm.get_checkpoint_state(d) is None
    assert cm.get_checkpoint_state(d + "/missing") is None
    assert tfcm.get_checkpoint_state(d + "/missing") is None
    os.mkdir(tmp_path / "checkpoint")
    assert cm.get_checkpoint_state(d) is None and tfcm.get_checkpoint_state(d) is None
    _touch(d + "/st", b'model_checkpoint_path: "x"\n')
    assert _outcome(lambda: cm.get_checkpoint_state(d, "st")) == _outcome(lambda: tfcm.get_checkpoint_state(d, "st"))


@pytest.mark.tf
def test_latest_checkpoint_matches_tf(tfcm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _make_ckpt("v2/m-1")
    _make_ckpt("v2/m-2")
    _touch("v1/m-1")
    _make_ckpt("gl[1]/m")
    _touch("gl1/m.index")
    _make_ckpt("gl2[x]/m")
    _make_ckpt("star/m-5")
    _touch("dotted/.m.index")
    scenarios = [
        ("v2", "m-2"),
        ("v2", "m-1"),
        ("v2", "m-3"),
        ("v2", str(tmp_path / "v2" / "m-2")),
        ("v1", "m-1"),
        ("v1", "m-2"),
        ("gl[1]", "m"),
        ("gl2[x]", "m"),
        ("star", "m-*"),
        ("star", "m-?"),
        ("star", "m-[0-9]"),
        ("dotted", ".m"),
        ("dotted", "*m"),
        ("v2", "../v1/m-1"),
        ("v2", "nothere/../m-2"),
        ("v2", "./m-2"),
        ("v2", "m-2.data-00000-of-00001"),
    ]
    for directory, model in scenarios:
        for form in (directory, directory + "/", str(tmp_path / directory)):
            path = os.path.join(form, "checkpoint")
            _touch(path, f'model_checkpoint_path: "{model}"\n'.encode())
            ours, theirs = cm.latest_checkpoint(form), tfcm.latest_checkpoint(form)
            assert ours == theirs, (form, model)
            for name in (None, "other"):
                assert cm.latest_checkpoint(form, name) == tfcm.latest_checkpoint(form, name)
            os.remove(path)
    assert cm.latest_checkpoint("nodir") is None and tfcm.latest_checkpoint("nodir") is None


GLOB_FILES = [
    "g/a.index",
    "g/.h.index",
    "g/run[1]/m.index",
    "g/run1/m.index",
    "g/x/y/z.index",
    "g/m-1.data-00000-of-00001",
    "g/m-1.data-0000-of-00001",
    "g/m-1.data-00000-of-00002",
    "g/star*name",
    "g/back\\slash",
    "g/é.index",
    "top.index",
]
GLOB_PATTERNS = [
    "g/a.index",
    "g/nope",
    "g/*.index",
    "g/*",
    "g/run[1]/m.index",
    "g/run\\[1\\]/m.index",
    "g/run[!1]/m.index",
    "g/run[^1]/m.index",
    "g/*/*/z.index",
    "g/*.index/",
    "g/a.index/",
    "g/*/",
    "g/*z.index",
    "*",
    "*.index",
    "top.index",
    "",
    "nothere/*",
    "g/nothere/../a.index",
    "g/m-1.data-?????-of-?????",
    "g//m-1.data-?????-of-?????",
    "g/./m-1.data-*",
    "./g/*",
    "g/star\\*name",
    "g/star*",
    "g/back\\\\slash",
    "g/back\\slash",
    "g/?.index",
    "g/[[:alpha:]].index",
    "g/[a-c]*",
    "g/[",
    "g/r*/m.index",
    "g/*/m.index",
    "g/**/z.index",
    "g/x/*/",
    "g/.",
    "g/x/..",
    "g/x/../*",
    "@/g/*.index",
    "@/g/run[1]/*",
    "@/*",
    "g/m-1.data-[0-9]*-of-*[12]",
    "g/\\a.index",
]


@pytest.mark.tf
def test_glob_matches_tf(tf, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in GLOB_FILES:
        _touch(name)
    for pattern in GLOB_PATTERNS:
        pattern = pattern.replace("@", str(tmp_path))
        assert sorted(cm.get_matching_files(pattern)) == sorted(tf.io.gfile.glob(pattern)), pattern


@pytest.mark.tf
def test_checkpoint_exists_and_mtimes_match_tf(tfcm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _make_ckpt("c/m-1")
    _make_ckpt("c/m-2")
    _touch("c/v1")
    _touch("c[1]/q.index")
    os.utime("c/m-1.index", ns=(1_600_000_000_999_999_999, 1_600_000_000_999_999_999))
    os.utime("c/v1", ns=(1_234_567_890_123_456_789, 1_234_567_890_123_456_789))
    prefixes = [
        "c/m-1",
        "c/m-2",
        "c/v1",
        "c/missing",
        "c/m-?",
        "c/m-*",
        "c1/q",
        "c[1]/q",
        str(tmp_path / "c" / "m-1"),
        "c/./m-1",
        "nothere/../c/m-1",
        "",
    ]
    for p in prefixes:
        assert cm.checkpoint_exists(p) == tfcm.checkpoint_exists(p), p
    assert cm.get_checkpoint_mtimes(prefixes) == tfcm.get_checkpoint_mtimes(prefixes)
    assert cm.get_checkpoint_mtimes(["c/m-1"]) == [1_600_000_000.0]


REMOVE_FILES = [
    "m-1.index",
    "m-1.data-00000-of-00002",
    "m-1.data-00001-of-00002",
    "m-1.meta",
    "m-1.pb",
    "m-1.data-00000-of-00001.tempstate123",
    "m-1.data-0000-of-00001",
    "m-10.index",
    "m-1",
    "m-1.txt",
    "checkpoint",
    "m-1-00000-of-00002",
    "m-1-00001-of-00002",
    "m-2.index",
    "m-3.index",
    "m-3.data-00000-of-00001",
    "m-[3].index",
]


@pytest.mark.tf
@pytest.mark.parametrize(
    "prefix,version,suffix",
    [
        ("m-1", 2, "meta"),
        ("m-1", 1, "meta"),
        ("m-1", 0, "pb"),
        ("m-1-00000-of-00002", 2, "meta"),
        ("m-1-?????-of-00002", 1, "meta"),
        ("m-?", 2, "meta"),
        ("m-[3]", 2, "meta"),
        ("missing", 2, "meta"),
        ("./m-1", 2, "meta"),
        ("m-1", 2, "txt"),
    ],
)
def test_remove_checkpoint_matches_tf(tfcm, tmp_path, monkeypatch, prefix, version, suffix):
    monkeypatch.chdir(tmp_path)
    for sub in ("theirs", "ours"):
        for name in REMOVE_FILES:
            _touch(f"{sub}/{name}")
    tfcm.remove_checkpoint(f"theirs/{prefix}", version, suffix)
    cm.remove_checkpoint(f"ours/{prefix}", version, suffix)
    assert sorted(os.listdir("ours")) == sorted(os.listdir("theirs"))
    assert cm.meta_graph_filename(prefix, suffix) == tfcm.meta_graph_filename(prefix, suffix)


@pytest.mark.tf
def test_tf_reads_our_state_and_checkpoints(tf, tmp_path):
    d = str(tmp_path)
    for i in (1, 2):
        _make_ckpt(f"{d}/model.ckpt-{i}")
    cm.update_checkpoint_state(
        d, f"{d}/model.ckpt-2", [f"{d}/model.ckpt-1", f"{d}/model.ckpt-2"], save_relative_paths=True
    )
    assert tf.train.latest_checkpoint(d) == f"{d}/model.ckpt-2"
    st = tf.train.get_checkpoint_state(d)
    assert list(st.all_model_checkpoint_paths) == [f"{d}/model.ckpt-1", f"{d}/model.ckpt-2"]
    assert tf.train.load_variable(d, "v") == np.float32(1.0)
