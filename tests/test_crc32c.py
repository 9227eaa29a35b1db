"""Tests for the native CRC-32C (fastckpt._native.crc32c*).

Every usable implementation (portable, and sse42, avx2_vpclmul or arm64 where
the CPU has them) is checked against published vectors, against the
google_crc32c package, and against itself when the data arrives in pieces; CRC
combination is checked against a small pure-Python model of GF(2) polynomial
arithmetic. The AVX2 + VPCLMULQDQ kernel, whose block layout has the most
seams, gets exhaustive checks of its own.
"""

import array
import os
import random
import subprocess
import sys
import threading

import google_crc32c  # the reference implementation (a declared test dependency)
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastckpt
from fastckpt import _native

IMPLS = _native.crc32c_impls()
ALL_NAMES = ("portable", "sse42", "avx2_vpclmul", "arm64")
X86_NAMES = ("sse42", "avx2_vpclmul")
# Where the fastckpt under test was imported from, for the subprocess tests.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastckpt.__file__)))

# Per-stream block lengths of the hardware kernels (crc32c_sse42.cc,
# crc32c_arm64.cc): sizes around multiples of 3 * block hit every seam.
_TIERS = (32, 256, 8192)


def _seam_sizes():
    sizes = set(range(0, 80))
    for block in _TIERS:
        for mult in (1, 2, 3):
            for delta in (-9, -8, -1, 0, 1, 7, 8, 9):
                sizes.add(3 * block * mult + delta)
    sizes.update({3 * 8192 + 3 * 256 + 3 * 32 + 7, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1})
    return sorted(s for s in sizes if s >= 0)


@pytest.fixture(autouse=True)
def _restore_active_impl():
    before = _native.crc32c_impl()
    yield
    _native.crc32c_set_impl(before)


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


# --- A pure-Python reference model (bitwise, slow, obviously correct) -------

_POLY = 0x82F63B78  # reflected Castagnoli polynomial


def _ref_crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def _ref_mul(a, b):
    """a * b mod P, reflected representation (bit 31 = x^0)."""
    product = 0
    for i in range(32):
        if a & (0x80000000 >> i):
            product ^= b
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _ref_combine(crc_a, crc_b, len_b):
    # x^(8 len_b) mod P by square-and-multiply over the bits of 8 * len_b.
    result, square, e = 0x80000000, 0x40000000, 8 * len_b
    while e:
        if e & 1:
            result = _ref_mul(result, square)
        square = _ref_mul(square, square)
        e >>= 1
    return _ref_mul(crc_a, result) ^ crc_b


# --- Known answers -----------------------------------------------------------

# RFC 3720 (iSCSI), appendix B.4, plus the usual check value and the empty input.
KNOWN_VECTORS = [
    (b"", 0x00000000),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (b"123456789", 0xE3069283),
    (b"a", 0xC1D04330),
    (b"The quick brown fox jumps over the lazy dog", 0x22620404),
]


@pytest.mark.parametrize("data,expected", KNOWN_VECTORS)
def test_known_vectors(impl, data, expected):
    assert _native.crc32c(data, impl=impl) == expected
    assert _native.crc32c(data, 0, impl) == expected
    _native.crc32c_set_impl(impl)
    assert _native.crc32c(data) == expected


@pytest.mark.parametrize("data,expected", KNOWN_VECTORS)
def test_reference_model_agrees_with_known_vectors(data, expected):
    # Guards the model the combine tests rely on.
    assert _ref_crc32c(data) == expected


def test_impl_names():
    assert IMPLS[0] == "portable"
    assert set(IMPLS) <= set(ALL_NAMES)
    assert len(IMPLS) == len(set(IMPLS))
    # Hardware kernels of one architecture only; the AVX2 + VPCLMULQDQ kernel
    # builds on SSE4.2 (and falls back on it for short inputs).
    assert not (set(X86_NAMES) & set(IMPLS) and "arm64" in IMPLS)
    if "avx2_vpclmul" in IMPLS:
        assert "sse42" in IMPLS
        assert IMPLS[-1] == "avx2_vpclmul"
    assert _native.crc32c_impl() in IMPLS


def test_default_is_fastest():
    _native.crc32c_set_impl("auto")
    assert _native.crc32c_impl() == IMPLS[-1]


# --- Buffer handling ---------------------------------------------------------


def test_buffer_types(impl):
    payload = bytes(range(256)) * 5
    expected = google_crc32c.value(payload)
    buffers = [
        payload,
        bytearray(payload),
        memoryview(payload),
        array.array("B", payload),
        np.frombuffer(payload, dtype=np.uint8),
        np.frombuffer(payload, dtype=np.float32).reshape(16, 20),  # 2-D, C-contiguous
    ]
    for buf in buffers:
        assert _native.crc32c(buf, impl=impl) == expected


def test_rejects_non_buffers_and_non_contiguous():
    with pytest.raises(TypeError):
        _native.crc32c("not bytes")
    with pytest.raises(TypeError):
        _native.crc32c(12345)
    # PyBUF_SIMPLE refuses strided views rather than hashing the wrong bytes.
    with pytest.raises(BufferError):
        _native.crc32c(memoryview(bytes(100))[::2])


def test_crc_argument_range():
    assert _native.crc32c(b"", 0xFFFFFFFF) == 0xFFFFFFFF
    with pytest.raises(TypeError):
        _native.crc32c(b"x", -1)
    with pytest.raises(TypeError):
        _native.crc32c(b"x", 1 << 32)


# --- Extending in pieces -----------------------------------------------------


def test_every_split_point(impl):
    rng = random.Random(1234)
    data = bytes(rng.getrandbits(8) for _ in range(300))
    whole = _native.crc32c(data, impl=impl)
    assert whole == google_crc32c.value(data)
    view = memoryview(data)
    for i in range(len(data) + 1):
        head = _native.crc32c(view[:i], impl=impl)
        assert _native.crc32c(view[i:], head, impl) == whole, i


def test_three_way_splits(impl):
    rng = random.Random(99)
    data = rng.randbytes(200)
    whole = google_crc32c.value(data)
    for i in range(0, 201, 7):
        for j in range(i, 201, 5):
            crc = _native.crc32c(data[:i], impl=impl)
            crc = _native.crc32c(data[i:j], crc, impl)
            assert _native.crc32c(data[j:], crc, impl) == whole, (i, j)


@pytest.mark.parametrize("size", [100_003, 3 * 8192 * 4 + 17, (1 << 20) + 13, 3 << 20])
def test_large_buffers_in_unaligned_pieces(impl, size):
    rng = random.Random(size)
    data = rng.randbytes(size + 16)
    for offset in (0, 1, 3, 7, 8, 13):
        view = memoryview(data)[offset : offset + size]
        expected = google_crc32c.value(view.tobytes())
        assert _native.crc32c(view, impl=impl) == expected
        # Cut at random (mostly unaligned) points and extend piece by piece.
        cuts = sorted(rng.sample(range(1, size), 9))
        crc, start = 0, 0
        for cut in cuts + [size]:
            crc = _native.crc32c(view[start:cut], crc, impl)
            start = cut
        assert crc == expected


# --- Differential against google_crc32c -------------------------------------


def test_seam_sizes_match_google(impl):
    rng = random.Random(7)
    sizes = _seam_sizes()
    data = rng.randbytes(max(sizes) + 8)
    for size in sizes:
        for offset in (0, 5):
            chunk = data[offset : offset + size]
            assert _native.crc32c(memoryview(data)[offset : offset + size], impl=impl) == (
                google_crc32c.value(chunk)
            ), (size, offset)


def test_random_sizes_match_google(impl):
    rng = random.Random(2024)
    pool = rng.randbytes(5 * 1024 * 1024 + 64)
    for _ in range(40):
        # Log-uniform sizes so small and large buffers are both well covered.
        size = min(int(2 ** rng.uniform(0, 22.33)), 5 * 1024 * 1024)
        offset = rng.randrange(64)
        view = memoryview(pool)[offset : offset + size]
        assert _native.crc32c(view, impl=impl) == google_crc32c.value(view.tobytes()), (
            size,
            offset,
        )
    # The extremes of the range.
    for size in (0, 5 * 1024 * 1024):
        view = memoryview(pool)[3 : 3 + size]
        assert _native.crc32c(view, impl=impl) == google_crc32c.value(view.tobytes())


def test_impls_agree_on_continued_crc():
    rng = random.Random(5)
    for size in (0, 1, 95, 97, 800, 30_000, 200_000):
        data = rng.randbytes(size)
        start = rng.getrandbits(32)
        expected = google_crc32c.extend(start, data)
        if size < 1000:
            assert expected == _ref_crc32c(data, start)
        for impl in IMPLS:
            assert _native.crc32c(data, start, impl) == expected, (impl, size)


def test_concurrent_threads_get_correct_results():
    # Large buffers drop the GIL; several threads hashing at once must not
    # interfere with one another.
    rng = random.Random(11)
    buffers = [rng.randbytes((1 << 20) + i) for i in range(4)]
    expected = [google_crc32c.value(b) for b in buffers]
    results = [None] * len(buffers)

    def work(i):
        for _ in range(5):
            results[i] = _native.crc32c(buffers[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(buffers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


# --- Combine -----------------------------------------------------------------


def test_combine_matches_concatenation(impl):
    rng = random.Random(3)
    for len_a, len_b in [(0, 0), (0, 5), (5, 0), (1, 1), (100, 3), (3, 100), (1000, 100_000)]:
        a, b = rng.randbytes(len_a), rng.randbytes(len_b)
        crc_a = _native.crc32c(a, impl=impl)
        crc_b = _native.crc32c(b, impl=impl)
        assert _native.crc32c_combine(crc_a, crc_b, len_b) == google_crc32c.value(a + b)


def test_combine_len_zero_is_identity():
    # crc(b"") == 0, so combining an empty B must return crc_a unchanged.
    for crc_a in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert _native.crc32c_combine(crc_a, 0, 0) == crc_a
    # crc(A) == 0 is the empty A: the result is crc(B) whatever len(B) is.
    assert _native.crc32c_combine(0, 0xE3069283, 9) == 0xE3069283
    assert _native.crc32c_combine(0, 0x12345678, 1 << 40) == 0x12345678


@settings(max_examples=200, deadline=None)
@given(a=st.binary(max_size=3000), b=st.binary(max_size=3000))
def test_combine_property(a, b):
    crc_ab = _native.crc32c(a + b)
    assert crc_ab == google_crc32c.value(a + b)
    assert _native.crc32c_combine(_native.crc32c(a), _native.crc32c(b), len(b)) == crc_ab


@pytest.mark.parametrize(
    "len_b",
    [
        (1 << 32) - 1,
        1 << 32,
        (1 << 32) + 1,
        5 * 10**9 + 123,
        (1 << 40) + 7,
        (1 << 61) - 1,
        1 << 61,
        (1 << 63) + 12345,
        (1 << 64) - 1,
    ],
)
def test_combine_huge_lengths(len_b):
    for crc_a, crc_b in [(0xE3069283, 0x8A9136AA), (0xFFFFFFFF, 0), (1, 0x80000000)]:
        got = _native.crc32c_combine(crc_a, crc_b, len_b)
        assert got == _ref_combine(crc_a, crc_b, len_b)
    # Splitting B into two huge parts must give the same shift.
    half = len_b // 2
    step = _native.crc32c_combine(_native.crc32c_combine(0xE3069283, 0, half), 0, len_b - half)
    assert step == _native.crc32c_combine(0xE3069283, 0, len_b)


def test_combine_argument_range():
    with pytest.raises(TypeError):
        _native.crc32c_combine(0, 0, -1)
    with pytest.raises(TypeError):
        _native.crc32c_combine(0, 0, 1 << 64)
    with pytest.raises(TypeError):
        _native.crc32c_combine(1 << 32, 0, 1)


# --- Masking (TensorFlow's stored form) --------------------------------------


def test_mask_constants():
    assert _native.crc32c_mask(0) == 0xA282EAD8
    assert _native.crc32c_unmask(0xA282EAD8) == 0
    # rotr(0xE3069283, 15) = 0x2507C60D; + 0xA282EAD8 = 0xC78AB0E5.
    assert _native.crc32c_mask(0xE3069283) == 0xC78AB0E5
    assert _native.crc32c_unmask(0xC78AB0E5) == 0xE3069283
    # Wraps around 2^32: rotr(0xFFFFFFFF, 15) + delta.
    assert _native.crc32c_mask(0xFFFFFFFF) == 0xA282EAD7


def test_mask_round_trip():
    rng = random.Random(8)
    for crc in [0, 1, 0xFFFFFFFF, 0x80000000] + [rng.getrandbits(32) for _ in range(1000)]:
        masked = _native.crc32c_mask(crc)
        assert _native.crc32c_unmask(masked) == crc
        assert _native.crc32c_mask(_native.crc32c_unmask(crc)) == crc
        expected = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
        assert masked == expected


# --- Choosing the implementation --------------------------------------------


def test_set_impl_each(impl):
    _native.crc32c_set_impl(impl)
    assert _native.crc32c_impl() == impl
    assert _native.crc32c(b"123456789") == 0xE3069283


def test_set_impl_auto():
    _native.crc32c_set_impl("portable")
    assert _native.crc32c_impl() == "portable"
    _native.crc32c_set_impl("auto")
    assert _native.crc32c_impl() == IMPLS[-1]


def test_set_impl_unknown_name():
    before = _native.crc32c_impl()
    with pytest.raises(fastckpt.InvalidArgumentError, match=r"unknown CRC32C implementation 'fastest'") as info:
        _native.crc32c_set_impl("fastest")
    message = str(info.value)
    for name in ["auto"] + IMPLS:
        assert f"'{name}'" in message
    assert _native.crc32c_impl() == before
    with pytest.raises(fastckpt.InvalidArgumentError, match="unknown"):
        _native.crc32c_set_impl("")
    with pytest.raises(fastckpt.InvalidArgumentError, match="unknown"):
        _native.crc32c_set_impl("SSE42")  # names are case-sensitive


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if n not in IMPLS])
def test_set_impl_unavailable(name):
    before = _native.crc32c_impl()
    with pytest.raises(fastckpt.InvalidArgumentError, match=f"'{name}' is not available on this CPU"):
        _native.crc32c_set_impl(name)
    with pytest.raises(fastckpt.InvalidArgumentError, match="not available"):
        _native.crc32c(b"x", impl=name)
    assert _native.crc32c_impl() == before


def test_crc32c_impl_argument_errors():
    message = r"unknown CRC32C implementation 'nope'; valid: 'portable'"
    with pytest.raises(fastckpt.InvalidArgumentError, match=message):
        _native.crc32c(b"x", impl="nope")
    with pytest.raises(fastckpt.InvalidArgumentError, match="unknown"):
        _native.crc32c(b"x", impl="auto")  # per call, name a real implementation
    with pytest.raises(TypeError):
        _native.crc32c(b"x", impl=3)


def _run_python(code, **env_overrides):
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("FASTCKPT_DISABLE_CPU_FEATURES", None)
    env.update(env_overrides)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_set_impl_in_fresh_process():
    # The child runs without this process's FASTCKPT_DISABLE_CPU_FEATURES (if
    # any), so its fastest implementation is its own last one.
    code = (
        "from fastckpt import _native\n"
        "print(_native.crc32c_impl(), _native.crc32c_impls()[-1])\n"
        "_native.crc32c_set_impl('portable')\n"
        "print(_native.crc32c_impl(), hex(_native.crc32c(b'123456789')))\n"
    )
    default, fastest, *rest = _run_python(code)
    assert default == fastest
    assert rest == ["portable", "0xe3069283"]


_SELF_CHECK = (
    "import random, google_crc32c\n"
    "from fastckpt import _native\n"
    "rng = random.Random(17)\n"
    "pool = rng.randbytes(400_000)\n"
    "sizes = [0, 7, 95, 96, 97, 767, 768, 769, 24575, 24576, 24577, 3 * 24576 + 801, 399_000]\n"
    "for size in sizes:\n"
    "    for off in (0, 3):\n"
    "        v = memoryview(pool)[off:off + size]\n"
    "        for impl in _native.crc32c_impls():\n"
    "            got = _native.crc32c(v, impl=impl)\n"
    "            assert got == google_crc32c.value(v.tobytes()), (impl, size, off)\n"
    "print(' '.join(_native.crc32c_impls()), _native.crc32c_impl())\n"
)


@pytest.mark.skipif("sse42" not in IMPLS, reason="needs an x86-64 CPU with SSE4.2")
def test_sse42_without_pclmul():
    # Exercises the table-merged SSE4.2 kernel used on CPUs without PCLMULQDQ.
    assert _run_python(_SELF_CHECK, FASTCKPT_DISABLE_CPU_FEATURES="pclmul") == [
        "portable",
        "sse42",
        "sse42",
    ]


@pytest.mark.skipif(len(IMPLS) < 2, reason="no hardware implementation on this CPU")
def test_hardware_disabled_falls_back_to_portable():
    assert _run_python(_SELF_CHECK, FASTCKPT_DISABLE_CPU_FEATURES="sse42, arm64_crc32") == [
        "portable",
        "portable",
    ]
    assert _run_python(_SELF_CHECK, FASTCKPT_DISABLE_CPU_FEATURES="all") == [
        "portable",
        "portable",
    ]


# --- The AVX2 + VPCLMULQDQ kernel (crc32c_avx2_vpclmul.cc) -------------------
#
# Its geometry: 256 bytes per iteration (128 folded by VPCLMULQDQ, 4 x 32 on
# CRC32 streams); blocks of up to 128 iterations (32 KiB) with tabled merge
# constants, 1024-iteration (256 KiB) blocks for long inputs; the SSE4.2 kernel
# below 512 bytes and for the tail; up to 7 head bytes to reach 8-byte
# alignment. The sizes and offsets below straddle every one of those seams.

VPCLMUL = "avx2_vpclmul"
needs_vpclmul = pytest.mark.skipif(
    VPCLMUL not in IMPLS,
    reason="needs an x86-64 CPU and OS with SSE4.2, PCLMULQDQ, AVX2 and VPCLMULQDQ",
)
_V_STEP = 256
_V_MIN = 512
_V_TABLE_BLOCK = 128 * _V_STEP
_V_BIG_BLOCK = 1024 * _V_STEP


def _vpclmul_seam_sizes():
    bases = {_V_MIN, 3 * _V_STEP, 4 * _V_STEP, 4 * _V_STEP + 96, 17 * _V_STEP}
    for block in (_V_TABLE_BLOCK, _V_BIG_BLOCK):
        for mult in (1, 2, 3):
            bases.add(mult * block)
            bases.add(mult * block + _V_STEP)
            bases.add(mult * block + _V_MIN)
    bases.add(_V_BIG_BLOCK + _V_TABLE_BLOCK)
    bases.add(2 * _V_BIG_BLOCK + 3 * _V_TABLE_BLOCK + 5 * _V_STEP + 96)
    sizes = set()
    for base in bases:
        for delta in (-9, -8, -7, -1, 0, 1, 7, 8, 9, 95, 97):
            sizes.add(base + delta)
    return sorted(sizes)


class _AlignedPool:
    """Random bytes whose start is 64-byte aligned, so that an offset into it
    is the offset from a cache-line (and YMM) boundary."""

    def __init__(self, size, seed):
        raw = np.frombuffer(random.Random(seed).randbytes(size + 64), dtype=np.uint8).copy()
        shift = (-raw.ctypes.data) % 64
        self._array = raw  # keeps the memory alive
        self.view = memoryview(raw[shift : shift + size])

    def chunk(self, offset, size):
        return self.view[offset : offset + size]


@pytest.fixture(scope="module")
def aligned_pool():
    return _AlignedPool(5 * 1024 * 1024, seed=4242)


def _check_vpclmul(view, start=0, with_portable=True):
    data = view.tobytes()
    expected = google_crc32c.extend(start, data)
    got = _native.crc32c(view, start, VPCLMUL)
    assert got == expected, (len(data), hex(start))
    if with_portable:
        assert _native.crc32c(view, start, "portable") == expected, len(data)


@needs_vpclmul
def test_vpclmul_every_length_to_4096(aligned_pool):
    # Every length (the hybrid starts at 512 bytes: one or more 256-byte
    # iterations, then the SSE4.2 tail), from an aligned, a 16-byte aligned
    # (as Python objects usually are) and an odd start.
    for offset in (0, 16, 3):
        for size in range(4097):
            _check_vpclmul(aligned_pool.chunk(offset, size))


@needs_vpclmul
def test_vpclmul_every_block_length(aligned_pool):
    # One block of each length 2..128 iterations (each has its own merge
    # constants), then a tail; 8-byte aligned and not.
    rng = random.Random(128)
    for iters in range(2, 129):
        for offset in (0, 5):
            size = iters * _V_STEP + rng.randrange(_V_STEP)
            _check_vpclmul(aligned_pool.chunk(offset, size), rng.getrandbits(32))


@needs_vpclmul
def test_vpclmul_every_alignment(aligned_pool):
    sizes = [
        _V_MIN,
        777,
        4096,
        4096 + 255,
        _V_TABLE_BLOCK + 300,
        _V_BIG_BLOCK + _V_TABLE_BLOCK + 1000,
        (1 << 20) + 13,
    ]
    for offset in range(64):
        for size in sizes:
            _check_vpclmul(aligned_pool.chunk(offset, size), with_portable=size <= 65536)


@needs_vpclmul
def test_vpclmul_seam_sizes(aligned_pool):
    for size in _vpclmul_seam_sizes():
        for offset in (0, 1, 7, 8, 16, 31):
            _check_vpclmul(aligned_pool.chunk(offset, size), with_portable=size <= 100_000)


@needs_vpclmul
def test_vpclmul_random_sizes_to_4mib(aligned_pool):
    rng = random.Random(31337)
    for _ in range(120):
        # Log-uniform sizes, random start offsets and incoming CRCs.
        size = min(int(2 ** rng.uniform(0, 22)), 4 * 1024 * 1024)
        offset = rng.randrange(64)
        start = rng.getrandbits(32)
        _check_vpclmul(aligned_pool.chunk(offset, size), start, with_portable=size <= 65536)
    _check_vpclmul(aligned_pool.chunk(5, 4 * 1024 * 1024), 0x12345678, with_portable=False)


@needs_vpclmul
def test_vpclmul_extend_every_split_point(aligned_pool):
    # Splits of a 2300-byte buffer put one side or both above the 512-byte
    # threshold at every possible cut.
    view = aligned_pool.chunk(9, 2300)
    whole = google_crc32c.value(view.tobytes())
    for i in range(len(view) + 1):
        head = _native.crc32c(view[:i], impl=VPCLMUL)
        assert _native.crc32c(view[i:], head, VPCLMUL) == whole, i


@needs_vpclmul
def test_vpclmul_extend_random_splits(aligned_pool):
    rng = random.Random(77)
    size = 3 * _V_BIG_BLOCK + 12345
    view = aligned_pool.chunk(11, size)
    whole = google_crc32c.value(view.tobytes())
    assert _native.crc32c(view, impl=VPCLMUL) == whole
    for _ in range(20):
        # A mix of arbitrary cuts and cuts near the kernel's block lengths.
        cuts = set(rng.sample(range(1, size), rng.randrange(1, 12)))
        for block in (_V_STEP, _V_TABLE_BLOCK, _V_BIG_BLOCK):
            cuts.add(block * rng.randrange(1, size // block) + rng.randrange(-8, 9))
        crc, start = 0, 0
        for cut in sorted(cuts) + [size]:
            crc = _native.crc32c(view[start:cut], crc, VPCLMUL)
            start = cut
        assert crc == whole


@needs_vpclmul
@pytest.mark.parametrize("size", [512, 4096, 65536, _V_BIG_BLOCK, (1 << 20) + 3])
def test_vpclmul_known_zero_buffers(size):
    # An answer independent of google_crc32c: n zero bytes move the initial
    # register (all ones) along by x^(8n), and the final inversion undoes the
    # initial one, so crc(0^n) = ~(~0 * x^(8n) mod P).
    expected = _ref_combine(0xFFFFFFFF, 0, size) ^ 0xFFFFFFFF
    assert _native.crc32c(bytes(size), impl=VPCLMUL) == expected
    # And the same zeros followed by the classic check input.
    tail = b"123456789"
    assert _native.crc32c(bytes(size) + tail, impl=VPCLMUL) == _ref_combine(expected, 0xE3069283, len(tail))


@needs_vpclmul
def test_vpclmul_is_auto_choice():
    _native.crc32c_set_impl("portable")
    _native.crc32c_set_impl("auto")
    assert _native.crc32c_impl() == VPCLMUL
    fastckpt.config.set_crc32c_impl("sse42")
    assert fastckpt.config.crc32c_impl() == "sse42"
    fastckpt.config.set_crc32c_impl(VPCLMUL)
    assert fastckpt.config.crc32c_impl() == VPCLMUL
    data = random.Random(3).randbytes(100_000)
    assert _native.crc32c(data) == google_crc32c.value(data)


def _cpuinfo_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


@pytest.mark.skipif(
    _cpuinfo_flags() is None or "sse4_2" not in (_cpuinfo_flags() or ()),
    reason="needs Linux on an x86-64 CPU with SSE4.2",
)
def test_vpclmul_detection_matches_cpuinfo():
    # The kernel clears the flags of features whose state the OS does not
    # save, so /proc/cpuinfo is an independent account of what is usable.
    flags = _cpuinfo_flags()
    expected = {"pclmulqdq", "avx2", "vpclmulqdq"} <= flags
    impls = _run_python("from fastckpt import _native; print(*_native.crc32c_impls())")
    assert (VPCLMUL in impls) == expected


@needs_vpclmul
@pytest.mark.parametrize("masked", ["vpclmul", "avx2", "pclmul", "avx2,vpclmul"])
def test_vpclmul_disabled_falls_back_to_sse42(masked):
    assert _run_python(_SELF_CHECK, FASTCKPT_DISABLE_CPU_FEATURES=masked) == [
        "portable",
        "sse42",
        "sse42",
    ]


@needs_vpclmul
def test_vpclmul_default_and_forced_in_fresh_process():
    assert _run_python(_SELF_CHECK) == ["portable", "sse42", VPCLMUL, VPCLMUL]
    assert _run_python(_SELF_CHECK, FASTCKPT_CRC32C="sse42") == [
        "portable",
        "sse42",
        VPCLMUL,
        "sse42",
    ]
    assert _run_python(_SELF_CHECK, FASTCKPT_CRC32C=VPCLMUL) == [
        "portable",
        "sse42",
        VPCLMUL,
        VPCLMUL,
    ]
    # Forcing an implementation the (masked) CPU lacks fails at import.
    with pytest.raises(subprocess.CalledProcessError) as info:
        _run_python("import fastckpt", FASTCKPT_CRC32C=VPCLMUL, FASTCKPT_DISABLE_CPU_FEATURES="vpclmul")
    assert "not available on this CPU" in info.value.stderr
