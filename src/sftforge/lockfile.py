"""One writer per output: a lock file beside the output naming who holds it.

A second command writing the same output stops at once with an error that names the
holder (PID, host, start time, command). A lock left by a process that died (SIGKILL,
power loss) is stale: the kernel dropped its ``flock``, so the next command takes it over
and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sftforge.errors import SftForgeError


class OutputLockedError(SftForgeError, RuntimeError):
    """Another live process is writing this output."""


def lock_path_for(output: str | Path) -> Path:
    """The lock of an output: a hidden sibling, so it survives the output being replaced."""
    p = Path(output)
    return p.parent / f".{p.name}.lock"


def _process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell a reused PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the process named in a lock file still runs (for the message only)."""
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process: cannot tell
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = holder.get("proc_start")
    return started is None or _process_start(pid) in (None, started)


def _describe(holder: dict[str, Any], path: Path) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    cmd = holder.get("command") or "?"
    return (
        f"PID {holder.get('pid')} on {holder.get('host')}, started {when}: {cmd} (lock file {path})"
    )


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable or half-written: treated as stale below
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def hold_lock(output: str | Path, what: str = "writing") -> Iterator[Path]:
    """Hold the lock of ``output`` for the block; raise :class:`OutputLockedError` when a
    live process holds it.

    The lock is an exclusive ``flock`` on the lock file, which the kernel releases when
    its holder dies however it dies; the file's content (PID, host, start, command) only
    names the holder. A lock file whose holder died is therefore taken over as it is.
    """
    import fcntl

    path = lock_path_for(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
        "proc_start": _process_start(os.getpid()),
        "command": " ".join(sys.argv) or what,
        "what": what,
    }
    for _attempt in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            holder = _read(path) or {}
            if holder and not _alive(holder):
                holder["pid"] = f"{holder.get('pid')} (exited; lock still held by a child?)"
            raise OutputLockedError(
                f"{output}: another process is {holder.get('what', 'writing')} this output: "
                f"{_describe(holder, path)}. Wait for it to finish, or write elsewhere."
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file was removed by its releasing holder meanwhile: again
    else:  # pragma: no cover - only under a storm of lock takers
        raise OutputLockedError(f"{output}: could not take the lock {path}")
    try:
        stale = _read(path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
        if stale:
            print(f"note: cleared a stale lock of a process that died: {_describe(stale, path)}",
                  file=sys.stderr)  # fmt: skip
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before unlocking: a waiter then retries on a fresh file
        os.close(fd)
