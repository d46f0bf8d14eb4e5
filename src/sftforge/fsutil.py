"""Files written so that a crash or a concurrent process never sees them half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def publish_dir(
    entry: Path, write: Callable[[Path], None], complete: Callable[[Path], bool]
) -> None:
    """Fill a temporary sibling of ``entry`` with ``write`` and rename it into place.

    If the rename fails because another process published ``entry`` first (``complete``
    says its copy is whole), that copy is kept; any other failure is raised.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        write(tmp)
        os.replace(tmp, entry)
    except OSError:
        if not complete(entry):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
