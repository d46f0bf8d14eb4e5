"""How the command line ends on a failure: one line for what a user can fix, a short
message and a log file for what is a bug.

Expected failures (bad input, a refused file, a full disk, a missing path) print
``sftforge: error: ...`` naming the file, record or setting, and exit with 2. Anything
else is a bug in sftforge or a library: the user sees its one-line summary and the path of
a log holding the traceback (``--debug`` or ``SFTFORGE_DEBUG=1`` prints it instead), and
the exit code is 1.
"""

from __future__ import annotations

import errno
import os
import sys
import time
import traceback
from pathlib import Path

from sftforge.errors import SftForgeError

#: Exit code of an expected failure (bad input or environment), as argparse uses.
EXIT_USAGE = 2
#: Exit code of an unexpected failure (a bug; the traceback is in the log).
EXIT_BUG = 1

_OS_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
}


def expected_message(exc: BaseException) -> str | None:
    """The one line for a failure a user can act on, or None for a bug."""
    if isinstance(exc, SftForgeError):
        return str(exc)
    if isinstance(exc, OSError):
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f)
        reason = _OS_REASONS.get(exc.errno or 0, exc.strerror or str(exc))
        return f"{where}: {reason}" if where else reason
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply to read (RecursionError)"
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, ValueError):
        return str(exc) or type(exc).__name__
    return None


def log_dir() -> Path:
    root = os.environ.get("SFTFORGE_CACHE") or Path.home() / ".cache" / "sftforge"
    return Path(root) / "logs"


def write_log(exc: BaseException, argv: list[str]) -> Path | None:
    """The traceback in a new log file; None if even that cannot be written."""
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        text = (
            "sftforge "
            + " ".join(argv)
            + "\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        )
        path.write_text(text, encoding="utf-8")
        return path
    except OSError:
        return None


def report(exc: BaseException, argv: list[str], *, debug: bool) -> int:
    """Print the failure as described in the module docstring; return the exit code."""
    message = expected_message(exc)
    if message is not None:
        print(f"sftforge: error: {message}", file=sys.stderr)
        if debug:
            traceback.print_exception(type(exc), exc, exc.__traceback__)
        return EXIT_USAGE
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        return EXIT_BUG
    log = write_log(exc, argv)
    where = f"the traceback is in {log}" if log else "the traceback could not be saved"
    print(
        f"sftforge: unexpected error: {type(exc).__name__}: {exc}\n"
        f"  This is a bug in sftforge or a library it uses; {where} "
        "(--debug prints it). Please report it with that file.",
        file=sys.stderr,
    )
    return EXIT_BUG
