"""Real faults where the machine allows them: a tiny tmpfs that fills up, a read-only one.

Mounting needs root (CI and the development machines run as root); elsewhere the tests
that need a mount skip with the reason, and the injected-``ENOSPC`` tests still run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True)  # fmt: skip
    return done.returncode == 0


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture()
def small_disk(tmp_path):
    """A 256 KiB file system: writing more fails with ENOSPC."""
    where = tmp_path / "small"
    if not _mount_tmpfs(where, "256k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield where
    _umount(where)


@pytest.fixture()
def read_only_dir(tmp_path):
    """A folder on a read-only file system, holding one file ``old.txt``."""
    where = tmp_path / "ro"
    if not _mount_tmpfs(where, "64k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    (where / "old.txt").write_text("old")
    ro = subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True)
    if ro.returncode != 0:
        _umount(where)
        pytest.skip("cannot remount read-only here")
    yield where
    _umount(where)
