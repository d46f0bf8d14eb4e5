"""The per-record half of ``sftforge data build``, run in worker processes.

A task is a chunk of one source: raw JSON Lines (``("lines", source, format, first_index,
line_numbers, lines)``; the main process only split the file into lines) or conversations
the main process already read (``("convs", source, conversations)``, every other
container). The worker parses and validates the lines (:class:`RecordConverter`, the same
code as :func:`~sftforge.data.formats.read_source`), names the source, applies the label
filter, runs the recipe's cleaning and filter blocks, and prepares the kept records for
the main process (:class:`~sftforge.data.prepared.PreparedBatch`: output rows serialised,
exact-duplicate digests and MinHash signatures computed). Rejects come back as JSON lines
with their counts, so the main process only writes them.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sftforge.data.block import Rejected, RejectSink, StageCounts
from sftforge.data.containers import parse_jsonl_line
from sftforge.data.formats import RecordConverter
from sftforge.data.prepared import PreparedBatch
from sftforge.data.recipe import Recipe
from sftforge.errors import SftForgeError
from sftforge.types import Conversation

__all__ = [
    "BuildWorkerError",
    "call",
    "init_worker",
    "prepare",
    "run_task",
    "safe_init",
    "tag_source",
    "token_lengths",
]


class BuildWorkerError(SftForgeError, RuntimeError):
    """A build worker process failed (its setup or a task raised, or it died): the build
    stops with the worker's message instead of waiting for it."""


# -- failing workers end the build -----------------------------------------------------------
# A pool initializer that raises makes multiprocessing respawn the worker forever (the
# build hangs). The initializer is wrapped instead: its error is kept and raised by the
# worker's first task, which sends it back to the main process like any task error.
_INIT_ERROR: BaseException | None = None


def safe_init(init: Callable[[Recipe], None], recipe: Recipe) -> None:
    """Pool initializer: run ``init(recipe)``, keeping any error for the first task."""
    global _INIT_ERROR
    try:
        init(recipe)
    except Exception as exc:
        _INIT_ERROR = exc


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives the trip to the main process (pickled, then rebuilt) as an
    error the CLI reports in one line; else a :class:`BuildWorkerError` with its message."""
    if isinstance(exc, SftForgeError):
        try:
            back = pickle.loads(pickle.dumps(exc))
            if type(back) is type(exc) and str(back) == str(exc):
                return exc
        except Exception:
            pass
        return BuildWorkerError(str(exc))
    return BuildWorkerError(f"a build worker failed: {type(exc).__name__}: {exc}")


def call(fn: Callable[[Any], Any], arg: Any) -> Any:
    """Run one task in a worker: the initializer's error first, if it had one."""
    if _INIT_ERROR is not None:
        raise _portable(_INIT_ERROR) from None
    try:
        return fn(arg)
    except Exception as exc:
        raise _portable(exc) from None


try:
    import orjson

    def _conversation_json(conv: Conversation) -> bytes:
        try:
            return orjson.dumps(conv.to_dict())
        except TypeError:  # huge ints, lone surrogates: json escapes them reversibly
            return json.dumps(conv.to_dict()).encode("ascii")

except ImportError:  # pragma: no cover - orjson is a dependency

    def _conversation_json(conv: Conversation) -> bytes:
        return json.dumps(conv.to_dict()).encode("ascii")


def tag_source(
    convs: Iterable[Conversation],
    name: str,
    label: bool | None,
    sink: RejectSink,
    stage: StageCounts,
) -> Iterator[Conversation]:
    """Name the source in meta; apply the recipe's label filter (KTO-style data)."""
    for conv in convs:
        stage.seen += 1
        if label is not None and conv.meta.get("label") is not label:
            sink.reject(
                Rejected("label_filtered", "source", f"label != {label}", conversation=conv)
            )
            continue
        stage.kept += 1
        yield Conversation(conv.messages, conv.tools, {**conv.meta, "source_name": name}, conv.kind)


class LineSink(RejectSink):
    """A worker's sink: counts, and every reject as ``(stage, reason, JSON line)``,
    serialised here exactly as :class:`RejectSink` writes it."""

    def __init__(self) -> None:
        super().__init__(max_examples=0)
        self.lines: list[tuple[str, str, str]] = []

    def reject(self, rejected: Rejected) -> None:
        self.stage(rejected.stage).rejected[rejected.reason] += 1
        line = json.dumps(rejected.to_dict(), ensure_ascii=False)
        self.lines.append((rejected.stage, rejected.reason, line))


class _State:
    """What a worker builds once, in its initializer, from the recipe."""

    def __init__(self) -> None:
        self.recipe: Recipe | None = None
        self.paths: list[str] = []
        self.blocks: list[Any] = []
        self.tokenizer: Any = None
        self.exact = False
        self.near: Any = None


_STATE = _State()


def init_worker(recipe: Recipe) -> None:
    """Pool initializer: tokenizer, cleaning and filter blocks, de-duplication keys."""
    from sftforge.data.dedup import ExactDedup, NearDedup
    from sftforge.data.pipeline import _global_blocks, _load_tokenizer, record_blocks

    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    _STATE.recipe = recipe
    _STATE.paths = [str(recipe.resolve(s.path)) for s in recipe.sources]
    _STATE.tokenizer = _load_tokenizer(recipe)
    _STATE.blocks = record_blocks(recipe, _STATE.tokenizer)
    for block in _global_blocks(recipe):
        if isinstance(block, ExactDedup):
            _STATE.exact = True
        elif isinstance(block, NearDedup):
            _STATE.near = block


def token_lengths(texts: list[str]) -> list[int] | None:
    """Token counts for the build's statistics, with this worker's tokenizer (``None``
    when the recipe names none)."""
    from sftforge.data.stats import token_lengths as count

    return None if _STATE.tokenizer is None else count(_STATE.tokenizer, texts)


def _read_lines(
    convert: RecordConverter, path: str, first_index: int, linenos: list[int], lines: list[bytes]
) -> Iterator[Conversation]:
    for k, (lineno, line) in enumerate(zip(linenos, lines, strict=True)):
        loc = {"source": path, "line": lineno, "index": first_index + k}
        conv = convert(loc, parse_jsonl_line(line))
        if conv is not None:
            yield conv


def run_task(task: tuple[Any, ...]) -> PreparedBatch:
    """One chunk through reading (for raw lines), the record blocks and preparation."""
    recipe = _STATE.recipe
    assert recipe is not None, "init_worker was not run"
    kind, sid = task[0], task[1]
    sink = LineSink()
    stream: Iterable[Conversation]
    if kind == "lines":
        _, _, fmt, first_index, linenos, lines = task
        src = recipe.sources[sid]
        convert = RecordConverter(format=fmt, column_map=dict(src.column_map) or None, sink=sink)
        read = _read_lines(convert, _STATE.paths[sid], first_index, linenos, lines)
        stream = tag_source(read, src.name, src.filter_label, sink, sink.stage("source"))
    else:
        stream = task[2]
    for block in _STATE.blocks:
        stream = block.run(stream, sink)
    return prepare(list(stream), sid, sink, recipe.sources[sid].name, _STATE.exact, _STATE.near)


def prepare(
    kept: list[Conversation],
    sid: int,
    sink: LineSink,
    source_name: str,
    exact: bool,
    near: Any,
) -> PreparedBatch:
    """The batch the main process receives for ``kept`` (see :mod:`sftforge.data.prepared`)."""
    from sftforge.data.dedup import _provenance, exact_digest
    from sftforge.data.mix import turn_code
    from sftforge.data.writer import row_line

    batch = PreparedBatch(
        sid,
        {name: c.to_dict() for name, c in sink.stages.items()},
        sink.lines,
        [row_line(c, source_name) for c in kept],
        [_conversation_json(c) for c in kept],
        [_provenance(c.meta) for c in kept],
        bytes(turn_code(c) for c in kept),
    )
    if exact:
        batch.exact = b"".join(map(exact_digest, kept))
    if near is not None and kept:
        batch.sig, batch.empty = near.signatures_of(kept)
    return batch
