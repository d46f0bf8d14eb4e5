"""From a built dataset to encoded training samples.

A dataset is a directory written by ``sftforge data build`` (``train.jsonl``,
``validation.jsonl``, ``manifest.json``) or a single unified JSONL file. A built dataset is
checked against its manifest (sizes, rows, SHA-256) before anything is encoded, so a split
cut short by a killed build is refused, not trained on; ``data.verify=false``
(``--no-verify``) skips the check and the run records that. Samples are encoded
once with the run's template and tokenizer (the same encoder inference-consistency is tested
on); the encode report feeds the supervision audit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftforge.data.manifest import Verification, dataset_dir_of, verify_dataset
from sftforge.data.writer import conversation_from_row, sha256_file
from sftforge.encode.encoder import Encoded, Encoder
from sftforge.encode.report import EncodeReport
from sftforge.errors import ConversationError, Location, SftForgeError
from sftforge.types import Conversation, as_conversation

TRAIN_FILE = "train.jsonl"
VALIDATION_FILE = "validation.jsonl"
MANIFEST_FILE = "manifest.json"


class DatasetNotFoundError(SftForgeError, FileNotFoundError):
    """The configured dataset path holds no training data."""


@dataclass(frozen=True)
class DatasetFiles:
    train: Path
    validation: Path | None
    manifest_sha256: str  # of manifest.json when there is one, else of the train file
    verification: Verification | None = None
    validation_verification: Verification | None = None

    def record(self) -> dict[str, Any]:
        """What run.json keeps of the verification."""
        out: dict[str, Any] = {
            "verification": self.verification.to_dict() if self.verification else None
        }
        if self.validation_verification is not None:
            out["validation_verification"] = self.validation_verification.to_dict()
        return out


def dataset_files(
    path: Path, validation: Path | None = None, *, verify: bool = True
) -> DatasetFiles:
    """Locate the splits of a dataset directory (or accept a single JSONL file), and check
    a built dataset against its manifest (raises
    :class:`~sftforge.data.manifest.DatasetIntegrityError` on a mismatch)."""
    files = _locate(path, validation)
    checked = verify_dataset(path, verify=verify) if path.exists() else None
    val_checked = None
    if files.validation is not None:
        val_dir = dataset_dir_of(files.validation)
        own_dir = dataset_dir_of(path)
        if val_dir is not None and (own_dir is None or Path(val_dir) != Path(own_dir)):
            val_checked = verify_dataset(files.validation, verify=verify)
    return DatasetFiles(files.train, files.validation, files.manifest_sha256, checked, val_checked)


def _locate(path: Path, validation: Path | None) -> DatasetFiles:
    if path.is_dir():
        train = path / TRAIN_FILE
        if not train.is_file():
            raise DatasetNotFoundError(
                f"{path}: no {TRAIN_FILE} here. Point data.path at a directory written by "
                "`sftforge data build` or at a unified JSONL file."
            )
        if validation is None and (path / VALIDATION_FILE).is_file():
            validation = path / VALIDATION_FILE
        manifest = path / MANIFEST_FILE
        digest = sha256_file(manifest if manifest.is_file() else train)
        return DatasetFiles(train, validation, digest)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such file or directory (data.path)")
    return DatasetFiles(path, validation, sha256_file(path))


def read_split(path: Path, limit: int | None = None) -> Iterator[Conversation]:
    """Conversations from a split file: dataset rows or unified-format conversations."""
    with path.open(encoding="utf-8") as fh:
        count = 0
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if limit is not None and count >= limit:
                return
            location = Location(str(path), lineno)
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConversationError(f"invalid JSON: {exc.msg}", location=location) from exc
            meta = {"source": str(path), "line": lineno, "index": count}
            try:
                if "source" in record and "kind" in record:  # a row of `data build`
                    # Its meta keeps the original provenance (source file and line).
                    conv = conversation_from_row(record)
                elif isinstance(record.get("text"), str) and "messages" not in record:
                    # Plain text ({"text": ...}, pretraining replay): every token trained.
                    text = {"messages": [{"role": "assistant", "content": record["text"]}],
                            "kind": "text"}  # fmt: skip
                    conv = as_conversation(text, meta=meta)
                else:
                    conv = as_conversation(record, meta=meta)
            except ConversationError as exc:
                raise exc.at(location) from exc
            count += 1
            yield conv


def encode_split(
    encoder: Encoder, path: Path, limit: int | None = None
) -> tuple[list[Encoded], EncodeReport]:
    """Encode every conversation of a split; dropped samples are counted, not returned."""
    report = EncodeReport()
    kept = list(encoder.encode_many(read_split(path, limit), report=report))
    return kept, report


def source_of(enc: Encoded) -> str:
    return str(enc.meta.get("source_name") or "unknown") if enc.meta else "unknown"


def as_features(samples: list[Encoded]) -> list[dict[str, Any]]:
    """What the collators take: ids and labels only."""
    return [{"input_ids": s.input_ids, "labels": s.labels} for s in samples]
