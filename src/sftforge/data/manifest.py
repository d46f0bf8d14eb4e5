"""A built dataset's manifest as the mark of completeness, and the check against it.

``data build`` records every output file's size, SHA-256 and row count in
``manifest.json``, written last. Every command that reads a built dataset (``train``,
``encode``, the evals) calls :func:`verify_dataset` first: a file cut short by a killed
build, a hand-edited split or a folder without a manifest stops with an error saying what
differs, unless the user passes ``--no-verify`` (which the outputs then record).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftforge.errors import SftForgeError

MANIFEST_FILE = "manifest.json"
#: The files a build lists in the manifest's ``outputs``.
SPLIT_FILES = ("train.jsonl", "train.parquet", "validation.jsonl", "validation.parquet")
OVERRIDE_HINT = "pass --no-verify (data.verify=false in a training config) to use it anyway"


class DatasetIntegrityError(SftForgeError, ValueError):
    """A built dataset does not match its manifest (or has none)."""


def count_rows(path: Path) -> int:
    """Rows of a split file: non-empty lines of JSONL, the row count of Parquet."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    rows = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                rows += 1
    return rows


def describe_file(path: Path) -> dict[str, Any]:
    """What the manifest records of one output file."""
    from sftforge.data.writer import sha256_file

    return {"sha256": sha256_file(path), "bytes": path.stat().st_size, "rows": count_rows(path)}


def describe_outputs(out_dir: Path, names: tuple[str, ...] = SPLIT_FILES) -> dict[str, Any]:
    return {name: describe_file(out_dir / name) for name in names if (out_dir / name).is_file()}


@dataclass
class Verification:
    """The result of :func:`verify_dataset`: what was checked, and whether it was skipped."""

    dataset: str
    verified: bool
    files: list[str] = field(default_factory=list)
    manifest_sha256: str | None = None
    skipped_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "verified": self.verified,
            "files": self.files,
            "manifest_sha256": self.manifest_sha256,
            "skipped": self.skipped_reason,
        }


def dataset_dir_of(path: str | Path) -> Path | None:
    """The built-dataset folder ``path`` is or lies in (one with a manifest or split
    files), or None for a standalone file."""
    p = Path(path)
    if p.is_dir():
        return p
    if p.name in SPLIT_FILES and (p.parent / MANIFEST_FILE).is_file():
        return p.parent
    return None


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetIntegrityError(
            f"{folder}: no {MANIFEST_FILE}, so this is not a complete `sftforge data build` "
            f"output (a build that was killed or is still running?); rebuild it, or "
            f"{OVERRIDE_HINT}"
        ) from None
    except (OSError, ValueError) as exc:
        raise DatasetIntegrityError(
            f"{path}: unreadable manifest ({exc}); {OVERRIDE_HINT}"
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("outputs"), dict):
        raise DatasetIntegrityError(f"{path}: no 'outputs' section; {OVERRIDE_HINT}")
    return data


def _recorded(entry: Any) -> dict[str, Any]:
    # Manifests before sizes and rows were recorded hold the SHA-256 alone.
    return {"sha256": entry} if isinstance(entry, str) else dict(entry)


def verify_dataset(
    path: str | Path, *, files: tuple[str, ...] | None = None, verify: bool = True
) -> Verification:
    """Check a built dataset (folder, or one of its split files) against its manifest.

    ``files`` limits the check to those names (default: every file the manifest lists, or
    just ``path`` when it is a file). A standalone file outside a built dataset passes
    unchecked (there is nothing to check it against). Raises
    :class:`DatasetIntegrityError` naming each difference.
    """
    from sftforge.data.writer import sha256_file

    p = Path(path)
    folder = dataset_dir_of(p)
    if folder is None:
        return Verification(str(p), False, skipped_reason="not a built dataset (no manifest)")
    if not verify:
        manifest = folder / MANIFEST_FILE
        digest = sha256_file(manifest) if manifest.is_file() else None
        return Verification(str(folder), False, [], digest, "--no-verify")
    manifest = read_manifest(folder)
    outputs = manifest["outputs"]
    if files is None:
        files = (p.name,) if p.is_file() else tuple(outputs)
    problems: list[str] = []
    for name in files:
        if name not in outputs:
            problems.append(f"{name}: not listed in {MANIFEST_FILE}")
            continue
        want = _recorded(outputs[name])
        target = folder / name
        if not target.is_file():
            problems.append(f"{name}: missing")
            continue
        size = target.stat().st_size
        if "bytes" in want and size != want["bytes"]:
            rows = count_rows(target)
            problems.append(
                f"{name}: {size:,} bytes and {rows:,} rows, but the manifest records "
                f"{want['bytes']:,} bytes and {want.get('rows', '?'):,} rows"
                if isinstance(want.get("rows"), int)
                else f"{name}: {size:,} bytes, but the manifest records {want['bytes']:,}"
            )
            continue
        if "rows" in want and count_rows(target) != want["rows"]:
            problems.append(f"{name}: row count differs from the manifest ({want['rows']:,})")
            continue
        if sha256_file(target) != want.get("sha256"):
            problems.append(f"{name}: content differs from the manifest (SHA-256)")
    if problems:
        raise DatasetIntegrityError(
            f"{folder}: the dataset does not match its {MANIFEST_FILE} (cut short by a "
            "killed build, or changed since):\n  " + "\n  ".join(problems) + f"\nRebuild it, "
            f"or {OVERRIDE_HINT}"
        )
    return Verification(str(folder), True, list(files), sha256_file(folder / MANIFEST_FILE))
