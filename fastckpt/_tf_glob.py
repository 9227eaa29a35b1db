"""TensorFlow's glob on local paths (``tf.io.gfile.glob``: tsl ``GetMatchingPaths``
with the POSIX file system's ``Match``), and the path rules it shares with the
state-file functions of :mod:`fastckpt.checkpoint_management`.

``*?[\\`` are pattern characters; each path component is matched with
``fnmatch(FNM_PATHNAME)`` (the C library's where there is one, else a
translation to a regular expression), so ``*`` never crosses a ``/`` but does
match a leading ``.``. Stateless and thread-safe.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from functools import lru_cache
from typing import Callable, List, Optional, Tuple, Union

from .errors import ArgumentTypeError

__all__ = ["PathLike", "fspath", "os_path", "file_exists", "get_matching_files"]

PathLike = Union[str, "os.PathLike[str]"]


def fspath(path: PathLike) -> str:
    """``os.fspath`` that insists on ``str`` (TensorFlow's paths are str)."""
    p = os.fspath(path)
    if not isinstance(p, str):
        raise ArgumentTypeError(f"expected a str or os.PathLike[str] path, got {type(p).__name__} ({p!r})")
    return p


def os_path(path: str) -> str:
    """The name TensorFlow's POSIX file system hands to the kernel.

    TensorFlow cleans every local path lexically before any system call
    (``TranslateName`` -> ``CleanPath``: ``a//b`` -> ``a/b``, ``x/../a`` -> ``a``
    even when ``x`` does not exist); ``os.path.normpath`` does the same.
    """
    return os.path.normpath(path)


_GLOB_CHARS = "*?[\\"


def _is_glob(s: str) -> bool:
    return any(c in s for c in _GLOB_CHARS)


def _tf_dirname(path: str) -> str:
    """``tsl::io::Dirname`` for a local path: text before the last ``/``."""
    pos = path.rfind("/")
    if pos < 0:
        return ""
    if pos == 0:
        return "/"
    return path[:pos]


def _tf_join(parent: str, child: str) -> str:
    """``tsl::io::JoinPath(parent, child)`` for a non-empty parent and a child name."""
    if not parent:
        return child
    return parent + child if parent.endswith("/") else parent + "/" + child


def _directory_prefixes(pattern: str) -> List[str]:
    """``AllDirectoryPrefixes``: the pattern's ancestors, root first, the pattern last."""
    first_glob = min((i for i, c in enumerate(pattern) if c in _GLOB_CHARS), default=len(pattern))
    patched = pattern
    if _tf_dirname(pattern[:first_glob]) == "":
        patched = _tf_join(".", pattern)  # `x*` is matched as `./x*`
    d = patched
    if pattern.endswith("/"):
        d = _tf_dirname(d)
    dirs: List[str] = []
    while d:
        dirs.append(d)
        parent = _tf_dirname(d)
        if parent == d:
            break
        d = parent
    dirs.reverse()
    return dirs


def _libc_fnmatch() -> Optional[Callable[[str, str], bool]]:
    """The C library's ``fnmatch(pattern, name, FNM_PATHNAME)``, TensorFlow's matcher on POSIX."""
    if sys.platform.startswith("linux"):
        flag = 1  # glibc / musl: FNM_PATHNAME = 1 << 0
    elif sys.platform == "darwin" or "bsd" in sys.platform:
        flag = 2  # BSD libc: FNM_PATHNAME = 0x02
    else:
        return None
    try:
        func = ctypes.CDLL(None).fnmatch
    except (OSError, AttributeError):  # pragma: no cover - static or unusual libc
        return None
    func.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    func.restype = ctypes.c_int

    def match(name: str, pattern: str) -> bool:
        return func(os.fsencode(pattern), os.fsencode(name), flag) == 0

    return match


_CHAR_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v",
    "blank": " \\t",
    "xdigit": "0-9A-Fa-f",
    "punct": "".join("\\" + c for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "cntrl": "\\x00-\\x1f\\x7f",
    "print": "\\x20-\\x7e",
    "graph": "\\x21-\\x7e",
}


def _class_char(c: str) -> str:
    return c if c.isalnum() else "\\" + c if c != "\n" else "\\n"


def _translate_bracket(pattern: str, i: int) -> Optional[Tuple[str, int]]:
    """Parses ``[...]`` whose ``[`` is just before ``pattern[i]``.

    Returns ``(regex, next_index)``, ``None`` if the bracket is not terminated
    (then ``[`` is an ordinary character), or ``("", -1)`` if it is malformed so
    that the whole pattern can never match (an unknown ``[:class:]``).
    """
    n = len(pattern)
    j = i
    negate = j < n and pattern[j] in "!^"
    if negate:
        j += 1
    parts: List[str] = []
    first = True
    while True:
        if j >= n:
            return None
        c = pattern[j]
        if c == "]" and not first:
            j += 1
            break
        first = False
        if c == "[" and j + 1 < n and pattern[j + 1] == ":":
            end = pattern.find(":]", j + 2)
            if end >= 0:
                name = pattern[j + 2 : end]
                if name not in _CHAR_CLASSES:
                    return "", -1
                parts.append(_CHAR_CLASSES[name])
                j = end + 2
                continue
        if c == "\\":
            j += 1
            if j >= n:
                return "", -1
            c = pattern[j]
        j += 1
        if j + 1 < n and pattern[j] == "-" and pattern[j + 1] != "]":
            hi = pattern[j + 1]
            j += 2
            if hi == "\\":
                if j >= n:
                    return "", -1
                hi = pattern[j]
                j += 1
            if c <= hi:
                parts.append(_class_char(c) + "-" + _class_char(hi))
            continue
        parts.append(_class_char(c))
    body = "".join(parts)
    if negate:
        return "[^/" + body + "]", j
    return ("(?!/)[" + body + "]" if body else "(?!)"), j


@lru_cache(maxsize=256)
def _translate(pattern: str) -> Optional["re.Pattern[str]"]:
    """``fnmatch(FNM_PATHNAME)`` pattern -> compiled regex; None if it can never match."""
    out: List[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            while i < n and pattern[i] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            if i >= n:
                return None  # a trailing backslash never matches
            out.append(re.escape(pattern[i]))
            i += 1
        elif c == "[":
            parsed = _translate_bracket(pattern, i)
            if parsed is None:
                out.append(re.escape("["))
            else:
                regex, i = parsed
                if i < 0:
                    return None
                out.append(regex)
        else:
            out.append(re.escape(c))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _python_fnmatch(name: str, pattern: str) -> bool:
    """Portable ``fnmatch(FNM_PATHNAME)`` (used where the C library's is unavailable)."""
    regex = _translate(pattern)
    return regex is not None and regex.match(name) is not None


_fnmatch: Callable[[str, str], bool] = _libc_fnmatch() or _python_fnmatch


def file_exists(path: str) -> bool:
    """TensorFlow's ``FileExists`` on a local path: ``access(F_OK)`` (follows symlinks)."""
    try:
        return os.access(os_path(path), os.F_OK)
    except (ValueError, TypeError):  # embedded NUL
        return False


def get_matching_files(pattern: PathLike) -> List[str]:
    """Files matching ``pattern``, with ``tf.io.gfile.glob`` semantics (local paths).

    A pattern without ``*?[\\`` names one path, returned if it exists. Otherwise
    each path component is matched with ``fnmatch(FNM_PATHNAME)``: ``*`` and
    ``?`` do not match ``/``, do match a leading ``.``; ``[...]``, ``[!...]``,
    ``[^...]`` and ``\\`` escapes work as in the C library. A pattern without a
    directory part is matched as ``./PATTERN`` and its results start with
    ``./``. Unreadable directories are skipped. Results of one directory come
    in directory-listing order.
    """
    pattern = fspath(pattern)
    if not pattern or "\0" in pattern:
        return []
    dirs = _directory_prefixes(pattern)
    index = next((i for i, d in enumerate(dirs) if _is_glob(d)), len(dirs))
    if index == len(dirs):
        return [pattern] if file_exists(pattern) else []

    results: List[str] = []
    queue = [(dirs[index - 1], index - 1)]
    while queue:
        next_queue = []
        for parent, level in queue:
            level += 1
            sub_pattern = dirs[level]
            try:
                children = os.listdir(os_path(parent))
            except OSError:
                continue
            for child in children:
                path = _tf_join(parent, child)
                if not _fnmatch(path, sub_pattern):
                    continue
                if level == len(dirs) - 1:
                    results.append(path)
                elif os.path.isdir(os_path(path)):
                    next_queue.append((path, level))
        queue = next_queue
    return results
