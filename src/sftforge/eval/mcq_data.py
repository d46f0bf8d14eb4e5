"""Readers for multiple-choice benchmark CSVs (MMLU, C-Eval, CMMLU layouts).

The three layouts differ only in their header:

* MMLU: no header; columns ``question,A,B,C,D,answer``.
* C-Eval: header ``id,question,A,B,C,D,answer[,explanation]``.
* CMMLU: header ``,Question,A,B,C,D,Answer`` (the first column is an unnamed row index).

The format is detected per file from its first row, so a directory may mix them. Quoted
fields can span lines; every item keeps the 1-based line its record starts on, so errors
(and per-question results) point at ``file:line``.

A benchmark directory holds ``dev/`` and/or ``val/`` subdirectories of ``<subject>_<split>.csv``
(or ``<subject>.csv``) files; the subject is the file stem without ``_dev`` / ``_val``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from sftforge.errors import SftForgeError

LETTERS = ("A", "B", "C", "D")
SPLITS = ("dev", "val")

_HEADER_COLUMNS = ("question", "a", "b", "c", "d", "answer")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class MCQItem:
    """One four-option question."""

    question: str
    options: tuple[str, str, str, str]
    answer: str  # "A".."D"
    subject: str
    source: str  # the CSV path
    line: int  # 1-based line the record starts on
    index: int  # 0-based position among the file's questions

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def same_question(self, other: MCQItem) -> bool:
        """Same text and options: such a row must never serve as its own shot."""
        return (self.question, self.options) == (other.question, other.options)


@dataclass
class SubjectData:
    """A subject of one benchmark: the questions scored and the dev rows shots come from."""

    benchmark: str
    subject: str
    split: str  # the split the questions come from
    items: list[MCQItem]
    dev: list[MCQItem]
    fallback: bool = False  # the requested split was missing; ``items`` are the dev rows

    @property
    def language(self) -> str:
        return detect_language(self.items + self.dev)


def detect_format(header: list[str]) -> str:
    """``"mmlu"`` (no header), ``"ceval"`` (``id,question,...``) or ``"cmmlu"``
    (``,Question,...``)."""
    cells = [c.strip().lower() for c in header]
    if tuple(cells[1:7]) == _HEADER_COLUMNS:
        return "cmmlu" if cells[0] == "" else "ceval"
    return "mmlu"


def subject_name(path: Path) -> str:
    stem = path.stem
    for split in SPLITS:
        if stem.endswith(f"_{split}"):
            return stem[: -len(split) - 1]
    return stem


def read_mcq_csv(path: str | Path) -> tuple[str, list[MCQItem]]:
    """The file's format and its questions; malformed rows raise with ``file:line``."""
    path = Path(path)
    items: list[MCQItem] = []
    fmt = "mmlu"
    subject = subject_name(path)
    # utf-8-sig: a byte-order mark would otherwise stick to the first header cell.
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        end = 0  # line_num after the previous record: the next record starts one line later
        first = True
        try:
            for row in reader:
                line, end = end + 1, reader.line_num
                if first:
                    first = False
                    fmt = detect_format(row)
                    if fmt != "mmlu":
                        continue
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                items.append(_item(row, fmt, path, line, subject, len(items)))
        except csv.Error as exc:
            raise SftForgeError(f"{path}:{end + 1}: malformed CSV: {exc}") from exc
    return fmt, items


def _item(row: list[str], fmt: str, path: Path, line: int, subject: str, index: int) -> MCQItem:
    # MMLU rows are exactly the six fields; the header formats lead with an id/index column
    # and C-Eval dev rows carry a trailing explanation, which is ignored.
    if fmt == "mmlu":
        if len(row) != 6:
            raise SftForgeError(
                f"{path}:{line}: expected 6 columns (question,A,B,C,D,answer), got {len(row)}"
            )
        fields = row
    else:
        if len(row) < 7:
            raise SftForgeError(
                f"{path}:{line}: expected at least 7 columns (id,question,A,B,C,D,answer), "
                f"got {len(row)}"
            )
        fields = row[1:7]
    question, a, b, c, d, answer = (f.strip() for f in fields)
    answer = answer.upper()
    if answer not in LETTERS:
        raise SftForgeError(f"{path}:{line}: answer must be one of A, B, C, D; got {answer!r}")
    if not question:
        raise SftForgeError(f"{path}:{line}: empty question")
    return MCQItem(question, (a, b, c, d), answer, subject, str(path), line, index)


def detect_language(items: list[MCQItem]) -> str:
    """``"zh"`` when most questions contain CJK characters, else ``"en"``: picks the
    instruction language (C-Eval and CMMLU are Chinese, MMLU English)."""
    if not items:
        return "en"
    cjk = sum(bool(_CJK.search(i.question + "".join(i.options))) for i in items)
    return "zh" if cjk * 2 > len(items) else "en"


def _subject_files(split_dir: Path) -> dict[str, Path]:
    if not split_dir.is_dir():
        return {}
    return {subject_name(p): p for p in sorted(split_dir.glob("*.csv"))}


def benchmark_dirs(data_dir: str | Path) -> list[Path]:
    """``data_dir`` itself when it holds ``dev/`` or ``val/``; else its benchmark subdirs
    (so both ``eval/mmlu`` and ``eval`` work)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise SftForgeError(f"{root}: not a directory")
    if any((root / s).is_dir() for s in SPLITS):
        return [root]
    found = [p for p in sorted(root.iterdir()) if any((p / s).is_dir() for s in SPLITS)]
    if not found:
        raise SftForgeError(f"{root}: no dev/ or val/ subdirectory (nor benchmarks holding one)")
    return found


def load_benchmark(bench_dir: str | Path, split: str = "val") -> list[SubjectData]:
    """Every subject of a benchmark directory for ``split``.

    A subject without a ``split`` file (CMMLU ships no val) is evaluated on its dev rows,
    with ``fallback`` set: its shots then come from the *other* dev rows.
    """
    if split not in SPLITS:
        raise SftForgeError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    bench_dir = Path(bench_dir)
    dev_files = _subject_files(bench_dir / "dev")
    split_files = _subject_files(bench_dir / split)
    subjects: list[SubjectData] = []
    for subject in sorted(set(dev_files) | set(split_files)):
        dev = read_mcq_csv(dev_files[subject])[1] if subject in dev_files else []
        if subject in split_files:
            items = dev if split == "dev" else read_mcq_csv(split_files[subject])[1]
            fallback = False
        else:
            items, fallback = dev, True
        subjects.append(
            SubjectData(
                bench_dir.name, subject, "dev" if fallback else split, items, dev, fallback=fallback
            )
        )
    if not subjects:
        raise SftForgeError(f"{bench_dir}: no CSV files under dev/ or {split}/")
    return subjects
