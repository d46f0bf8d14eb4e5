"""Data recipes: typed, validated configuration for ``sftforge data build``.

A recipe is YAML; this module turns it into frozen dataclasses and rejects unknown keys
by the path they were written at (``sources[2].wieght: unknown key; did you mean
'weight'?``). Relative paths are resolved against the recipe file's folder. Blocks
(cleaning, filters) are listed by name with their parameters and checked against the
block registry when the recipe is loaded, not halfway through a build.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftforge.configio import build, read_yaml_mapping, set_dotted
from sftforge.errors import SftForgeError


class RecipeError(SftForgeError, ValueError):
    """A recipe is invalid; the message names the key path."""


@dataclass(frozen=True)
class SourceSpec:
    """One input file (or HF datasets dir) and how much of the mix it gets."""

    #: The source's name in reports, the manifest and the rows' ``source`` column.
    name: str
    #: A file (JSON, JSONL, CSV, TSV, Parquet, TXT; ``.gz`` too), a folder of them, or a
    #: saved ``datasets`` folder.
    path: str
    #: ``auto`` (detected from the records), or alpaca, sharegpt, openai, firefly, belle, text.
    format: str = "auto"
    #: Our field names to the file's columns, e.g. ``{instruction: question, output: answer}``.
    column_map: Mapping[str, str] = field(default_factory=dict)
    #: Languages expected in this source (ISO codes) for the ``language`` filter.
    language: tuple[str, ...] = ()
    #: Relative share of what ``mix.total`` leaves after the sources with a ``count``.
    weight: float | None = None
    #: Exactly this many records in the mix (fewer fails the build unless shortfalls are allowed).
    count: int | None = None
    #: Upsample (repeat records as evenly as possible) when the pool is smaller than asked.
    allow_repeat: bool = False
    #: Plain-text replay against forgetting: its share is set by ``mix.replay_ratio``.
    replay: bool = False
    #: Keep only records whose label equals this (KTO data: ``true`` keeps the good ones).
    filter_label: bool | None = None


@dataclass(frozen=True)
class BlockSpec:
    """A cleaning or filter block by registry name, with its parameters."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DedupSpec:
    #: Drop records whose normalised text equals an earlier one's.
    exact: bool = True
    #: MinHash near-duplicates, e.g. ``{threshold: 0.8}``; ``null`` disables.
    near: Mapping[str, Any] | None = field(default_factory=dict)
    #: MiniLM embedding duplicates, e.g. ``{threshold: 0.95}`` (per source, in memory).
    semantic: Mapping[str, Any] | None = None
    #: Drop training records that contain eval questions: ``{eval: [folders or files]}``
    #: (MMLU / C-Eval / CMMLU CSVs, MT-Bench ``turns``, ``question``/``prompt``/``instruction``).
    decontaminate: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SelectSpec:
    #: Records kept per source pool.
    n: int
    #: ``kcenter`` (greedy farthest-point) or another method of ``sftforge.data.select``.
    method: str = "kcenter"
    #: ``hashing`` (fast, no model) or ``minilm`` (sentence embeddings).
    features: str = "hashing"


@dataclass(frozen=True)
class MixSpec:
    #: Records in the mix (default: the largest the weights allow without repeats).
    total: int | None = None
    #: Fraction of the chat samples with more than one assistant turn.
    multi_turn_share: float | None = None
    #: Fraction of the whole mix drawn from the ``replay: true`` sources.
    replay_ratio: float | None = None
    #: A source with no records, or a share/count the pools cannot meet, fails the build;
    #: true makes it a warning (in the manifest and the build summary) instead.
    allow_shortfall: bool = False


@dataclass(frozen=True)
class WindowSpec:
    """Long text documents (``kind: text``: replay, ``.txt``) cut into training-length
    windows at paragraph boundaries instead of being dropped by the length filter.

    ``max_chars`` / ``max_tokens``: the window size (default: the ``length`` filter's
    ``max_chars`` / ``max_tokens``; neither: no windows). ``enabled: false`` turns it off.
    """

    #: ``false``: long text documents are kept whole (and may be dropped as too long).
    enabled: bool = True
    #: Window size in characters (default: the ``length`` filter's ``max_chars``).
    max_chars: int | None = None
    #: Window size in tokens (default: the ``length`` filter's ``max_tokens``).
    max_tokens: int | None = None


@dataclass(frozen=True)
class SplitSpec:
    #: Fraction of each source's records held out for validation (stratified by source).
    val_ratio: float = 0.05
    #: A fixed number of validation records instead of a ratio.
    val_count: int | None = None


@dataclass(frozen=True)
class Recipe:
    """The whole build: sources, blocks in order, de-duplication, selection, mix, split."""

    #: The dataset's name (manifest, report; default output ``runs/data/NAME``).
    name: str
    #: The inputs (see the ``sources[]`` keys).
    sources: tuple[SourceSpec, ...]
    #: Seeds sampling, the split and selection: the same recipe builds the same dataset.
    seed: int = 0
    #: The dataset folder (``--output`` overrides it).
    output: str | None = None
    #: Tokenizer for token lengths (filters, report): ``smollm2``, a folder or a file.
    tokenizer: str | None = "smollm2"
    #: Cleaning blocks, in order (see "Recipe blocks" below).
    clean: tuple[BlockSpec, ...] = ()
    #: Filter blocks, in order; every drop has a reason in ``rejects.jsonl``.
    filters: tuple[BlockSpec, ...] = ()
    dedup: DedupSpec = field(default_factory=DedupSpec)
    #: Diversity selection per source pool (``null``: keep everything).
    select: SelectSpec | None = None
    mix: MixSpec = field(default_factory=MixSpec)
    split: SplitSpec = field(default_factory=SplitSpec)
    window: WindowSpec = field(default_factory=WindowSpec)
    #: Worker processes for reading, cleaning and filtering.
    num_proc: int = 1
    #: Stop at the first rejected record instead of counting it.
    strict: bool = False
    base_dir: str = "."

    def resolve(self, path: str) -> Path:
        """A recipe path, relative to the recipe file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- loading ----------------------------------------------------------------------------------
def load_recipe(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """Read, validate and resolve a recipe YAML file."""
    path = Path(path)
    data = read_yaml_mapping(path, error=RecipeError, what="recipe")
    data.setdefault("name", path.stem)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value, error=RecipeError)
    data["base_dir"] = str(path.resolve().parent)
    try:
        recipe = recipe_from_dict(data)
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from exc
    return recipe


def recipe_from_dict(data: Mapping[str, Any]) -> Recipe:
    """Build a :class:`Recipe` from plain data, naming any bad key by its path."""
    data = dict(data)
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources:
        raise RecipeError("sources: a non-empty list of sources is required")
    data["sources"] = tuple(
        _build(SourceSpec, _source_defaults(s, i), f"sources[{i}]") for i, s in enumerate(sources)
    )
    for key in ("clean", "filters"):
        data[key] = tuple(_block_specs(data.get(key) or [], key))
    if "dedup" in data:
        data["dedup"] = _build(DedupSpec, data["dedup"] or {}, "dedup")
    if data.get("select") is not None:
        data["select"] = _build(SelectSpec, data["select"], "select")
    if "mix" in data:
        data["mix"] = _build(MixSpec, data["mix"] or {}, "mix")
    if "split" in data:
        data["split"] = _build(SplitSpec, data["split"] or {}, "split")
    if "window" in data:
        data["window"] = _build(WindowSpec, data["window"] or {}, "window")
    recipe = _build(Recipe, data, "")
    _check(recipe)
    return recipe


def _source_defaults(raw: Any, i: int) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise RecipeError(f"sources[{i}]: expected a mapping with at least 'path'")
    raw = dict(raw)
    if "path" in raw and "name" not in raw:
        raw["name"] = Path(str(raw["path"])).stem
    lang = raw.get("language")
    if isinstance(lang, str):
        raw["language"] = (lang,)
    elif isinstance(lang, list):
        raw["language"] = tuple(lang)
    return raw


def _block_specs(raw: Any, where: str) -> list[BlockSpec]:
    """Blocks are written as ``- name`` or ``- name: {params}``."""
    if not isinstance(raw, list):
        raise RecipeError(f"{where}: expected a list of blocks")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            out.append(BlockSpec(item))
        elif isinstance(item, Mapping) and len(item) == 1:
            ((name, params),) = item.items()
            if params is not None and not isinstance(params, Mapping):
                raise RecipeError(f"{where}[{i}].{name}: parameters must be a mapping")
            out.append(BlockSpec(str(name), dict(params or {})))
        else:
            raise RecipeError(f"{where}[{i}]: expected 'name' or {{name: {{params}}}}")
    return out


def _build(cls: type, raw: Any, where: str) -> Any:
    return build(cls, raw, where, error=RecipeError)


def _check(recipe: Recipe) -> None:
    """Cross-field rules that types alone can't express."""
    names = [s.name for s in recipe.sources]
    for i, s in enumerate(recipe.sources):
        if names.count(s.name) > 1:
            raise RecipeError(f"sources[{i}].name: {s.name!r} is used twice")
        if s.weight is not None and s.count is not None:
            raise RecipeError(f"sources[{i}]: give either weight or count, not both")
        if s.weight is not None and s.weight < 0:
            raise RecipeError(f"sources[{i}].weight: must be >= 0")
        if s.count is not None and s.count < 0:
            raise RecipeError(f"sources[{i}].count: must be >= 0")
    for key in ("multi_turn_share", "replay_ratio"):
        value = getattr(recipe.mix, key)
        if value is not None and not 0 <= value <= 1:
            raise RecipeError(f"mix.{key}: must be between 0 and 1")
    if not 0 <= recipe.split.val_ratio < 1:
        raise RecipeError("split.val_ratio: must be in [0, 1)")
    for key in ("max_chars", "max_tokens"):
        value = getattr(recipe.window, key)
        if value is not None and value < 1:
            raise RecipeError(f"window.{key}: must be at least 1")
    if recipe.num_proc < 1:
        raise RecipeError("num_proc: must be at least 1")
    _check_blocks(recipe)
    _check_dedup(recipe)
    _check_select(recipe)


def _hint(name: str, known: Any) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: Block parameters the build fills in from the recipe when they are not given.
_FILLED = {"tokenizer", "languages", "default"}


def _check_blocks(recipe: Recipe) -> None:
    """Every cleaning and filter block exists and is given only parameters it accepts (so
    a typo stops the recipe at load, not a build worker halfway through)."""
    from sftforge.data.filters import BLOCKS, block_params

    for key, what in (("clean", "cleaning block"), ("filters", "filter")):
        for i, spec in enumerate(getattr(recipe, key)):
            at = f"{key}[{i}].{spec.name}"
            if spec.name not in BLOCKS:
                raise RecipeError(
                    f"{at}: unknown {what} {spec.name!r}{_hint(spec.name, BLOCKS)}; known "
                    f"blocks: {', '.join(BLOCKS)}"
                )
            valid = block_params(spec.name)
            _check_params(at, spec.params, valid, filled=_FILLED)


def _check_params(
    at: str, params: Mapping[str, Any], valid: Mapping[str, Any], filled: Any = ()
) -> None:
    for key in params:
        if key not in valid:
            raise RecipeError(
                f"{at}.{key}: unknown parameter{_hint(key, valid)}; valid parameters: "
                f"{', '.join(valid)}"
            )
    missing = [
        k
        for k, v in valid.items()
        if v is inspect.Parameter.empty and k not in params and k not in filled
    ]
    if missing:
        raise RecipeError(f"{at}: missing required parameter(s) {', '.join(missing)}")


def _signature(cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name != "self"
        and p.name not in skip
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _check_dedup(recipe: Recipe) -> None:
    d = recipe.dedup
    if d.near is None and d.semantic is None and d.decontaminate is None:
        return
    from sftforge.data.decontam import Decontaminate
    from sftforge.data.dedup import NearDedup, SemanticDedup

    if d.near is not None:
        _check_params("dedup.near", d.near, _signature(NearDedup))
    if d.semantic is not None:
        _check_params("dedup.semantic", d.semantic, _signature(SemanticDedup))
    if d.decontaminate is not None:
        params = dict(d.decontaminate)
        evals = params.pop("eval", None) or params.pop("evals", None)
        if not evals:
            raise RecipeError("dedup.decontaminate.eval: list the eval files or folders")
        if not isinstance(evals, (str, list)) or (
            isinstance(evals, list) and not all(isinstance(e, str) for e in evals)
        ):
            raise RecipeError("dedup.decontaminate.eval: expected a path or a list of paths")
        _check_params("dedup.decontaminate", params, _signature(Decontaminate, ("evals",)))


def _check_select(recipe: Recipe) -> None:
    if recipe.select is None:
        return
    from sftforge.data.select import FEATURES, METHODS

    sel = recipe.select
    if sel.method not in METHODS:
        raise RecipeError(
            f"select.method: unknown method {sel.method!r}{_hint(sel.method, METHODS)}; "
            f"expected one of {', '.join(METHODS)}"
        )
    if sel.features not in FEATURES:
        raise RecipeError(
            f"select.features: unknown features {sel.features!r}"
            f"{_hint(sel.features, FEATURES)}; expected one of {', '.join(FEATURES)}"
        )
    if sel.n < 0:
        raise RecipeError("select.n: must be >= 0")


def decontaminate_paths(recipe: Recipe) -> list[Path]:
    """The eval files or folders ``dedup.decontaminate.eval`` names, resolved."""
    params = dict(recipe.dedup.decontaminate or {})
    evals = params.get("eval") or params.get("evals") or []
    return [recipe.resolve(p) for p in ([evals] if isinstance(evals, str) else evals)]


def check_paths(recipe: Recipe) -> None:
    """Before a build reads anything: every source and decontamination path exists and
    can be read; errors name the recipe field."""
    checks = [(f"sources[{i}].path", recipe.resolve(s.path)) for i, s in enumerate(recipe.sources)]
    checks += [("dedup.decontaminate.eval", p) for p in decontaminate_paths(recipe)]
    for at, path in checks:
        if not path.exists():
            raise RecipeError(f"{at}: {path} does not exist")
        if path.is_dir():
            if not os.access(path, os.R_OK | os.X_OK):
                raise RecipeError(f"{at}: {path} is a folder that cannot be read (permissions)")
            continue
        if not path.is_file():
            raise RecipeError(f"{at}: {path} is not a regular file or folder")
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise RecipeError(f"{at}: {path} cannot be read: {exc.strerror or exc}") from None
