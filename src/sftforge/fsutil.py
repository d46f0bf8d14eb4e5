"""Files written so that a crash or a concurrent process never sees them half-written.

Every file sftforge writes goes through :func:`atomic_open` (or :func:`atomic_write_text`
/ :func:`atomic_write_bytes`), every folder it publishes through :func:`publish_dir`: the
content is written to a temporary sibling and renamed into place only when complete, so a
kill, a full disk or an exception leaves either the old file or the new one, never a
partial. Published files get the user's normal modes (what ``open`` would give under the
current umask), not the 0600/0700 of the temporary names.

:func:`refuse_input_as_output` stops a command before it opens anything when an output
path is one of its inputs (through symlinks and hard links too).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from sftforge.errors import SftForgeError

#: Prefix of every temporary sibling; readers and cleaners recognise leftovers by it.
TMP_PREFIX = ".sftforge-tmp-"


class OutputIsInputError(SftForgeError, ValueError):
    """An output path resolves to one of the command's inputs."""


class OutputPathError(SftForgeError, OSError):
    """An output path cannot be written (a folder where a file is expected, read-only...)."""


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file (0o666 less the umask)."""
    return 0o666 & ~_umask()


def default_dir_mode() -> int:
    """The mode ``mkdir`` would give a new folder (0o777 less the umask)."""
    return 0o777 & ~_umask()


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same resolved path, or the same inode (hard
    links, bind mounts). Paths that do not exist are compared by their resolved names."""
    pa, pb = Path(a), Path(b)
    with contextlib.suppress(OSError):
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    return os.path.realpath(pa) == os.path.realpath(pb)


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
    except ValueError:
        return False
    return True


def refuse_input_as_output(
    inputs: Iterable[str | Path | None], outputs: Iterable[str | Path | None]
) -> None:
    """Raise :class:`OutputIsInputError` when an output is an input, or an output folder
    holds an input (publishing the folder would replace it)."""
    ins = [Path(p) for p in inputs if p is not None]
    for out in (Path(p) for p in outputs if p is not None):
        for src in ins:
            if same_file(out, src):
                raise OutputIsInputError(
                    f"{out}: this output is the input {src}; writing it would destroy the "
                    "input. Choose another output path."
                )
            if out.is_dir() and src.exists() and _inside(src, out):
                raise OutputIsInputError(
                    f"{out}: this output folder holds the input {src}; writing it would "
                    "replace the input. Choose another output folder."
                )


def check_output_file(path: str | Path) -> Path:
    """The output file path, or a clear error when it cannot be one (an existing folder)."""
    p = Path(path)
    if p.is_dir():
        raise OutputPathError(f"{p}: is a folder; give a file path for this output")
    return p


def output_dir(path: str | Path) -> Path:
    """An output folder, created if needed; a clear error when a file stands there."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{p}: is a file; give a folder for this output")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(p, exc) from exc
    return p


def _tmp_sibling(path: Path, *, folder: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{TMP_PREFIX}{path.name}-"
    if folder:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write to; renamed over ``path`` when the block
    ends without an exception, removed otherwise."""
    target = check_output_file(path)
    try:
        tmp = _tmp_sibling(target)
    except OSError as exc:
        raise _write_error(target, exc) from exc
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, SftForgeError):
            raise _write_error(target, exc) from exc
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | Path, mode: str = "w", encoding: str | None = "utf-8", **kwargs: Any
) -> Iterator[IO[Any]]:
    """``open(path, mode)`` that publishes the file only when the block succeeds."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    with atomic_open(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def _write_error(target: Path, exc: OSError) -> OutputPathError:
    import errno

    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
        errno.EISDIR: "is a folder",
        errno.ENOTDIR: "a parent of it is a file, not a folder",
    }
    reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
    return OutputPathError(f"{target}: cannot write ({reason}); nothing was changed there")


def fix_tree_modes(root: Path) -> None:
    """Give a freshly written tree the user's normal modes (temporary folders are 0700)."""
    fmode, dmode = default_file_mode(), default_dir_mode()
    os.chmod(root, dmode)
    for base, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(base, d), dmode)
        for f in files:
            p = os.path.join(base, f)
            if not os.path.islink(p):
                os.chmod(p, fmode)


def publish_dir(
    entry: Path,
    write: Callable[[Path], None],
    complete: Callable[[Path], bool] | None = None,
    *,
    replace: bool = False,
) -> None:
    """Fill a temporary sibling of ``entry`` with ``write`` and rename it into place.

    With ``replace=False`` (caches), if the rename fails because another process published
    ``entry`` first (``complete`` says its copy is whole), that copy is kept; any other
    failure is raised. With ``replace=True`` an existing ``entry`` is swapped out in one
    rename and removed afterwards, so readers see the old folder or the new one.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(entry, folder=True)
    old: Path | None = None
    try:
        write(tmp)
        fix_tree_modes(tmp)
        if replace and entry.exists():
            if _exchange(tmp, entry):  # one atomic swap: tmp now holds the old folder
                old, tmp = tmp, entry
                return
            old = _tmp_sibling(entry, folder=True)
            os.rmdir(old)
            os.replace(entry, old)  # entry is now free; the rename below takes its place
        try:
            os.replace(tmp, entry)
        except OSError:
            if old is not None:
                os.replace(old, entry)  # put the previous one back
                old = None
            raise
    except OSError:
        if replace or complete is None or not complete(entry):
            raise
    finally:
        if tmp != entry:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False
    where the system or the file system cannot, and the caller renames twice instead."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return done == 0
