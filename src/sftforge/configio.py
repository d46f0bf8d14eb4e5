"""Typed YAML configuration: frozen dataclasses built from plain data, strictly.

Shared by training configs (and usable by any other config): unknown keys are errors that
name the key by the path it was written at (``train.lerning_rate: unknown key; did you mean
'learning_rate'?``), scalars are type-checked, nested dataclass fields are built
recursively, and ``key.sub=value`` overrides from the command line are applied before
validation. A config is never mutated after it is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sftforge.errors import SftForgeError

T = TypeVar("T")


class ConfigError(SftForgeError, ValueError):
    """A configuration is invalid; the message names the key path."""


def read_yaml_mapping(
    path: str | Path, error: type[Exception] = ConfigError, what: str = "config"
) -> dict[str, Any]:
    """A YAML file that must hold a mapping, with errors that name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top level")
    return data


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["train.learning_rate=1e-4", "data.packing=false"]`` -> dotted keys to YAML values."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. train.epochs=2)")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
    return out


def set_dotted(
    data: dict[str, Any], key: str, value: Any, error: type[Exception] = ConfigError
) -> None:
    """Set ``data['a']['b'] = value`` for ``key='a.b'``, creating mappings on the way."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise error(f"override {key!r}: {part!r} is not a mapping")
    node[parts[-1]] = value


def build(cls: type[T], raw: Any, where: str = "", error: type[Exception] = ConfigError) -> T:
    """Build dataclass ``cls`` from a mapping; nested dataclass fields are built too.
    Problems raise ``error`` (a :class:`ConfigError` unless a caller has its own type)."""
    if not isinstance(raw, Mapping):
        raise error(f"{where or 'config'}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise error(f"{_join(where, key)}: unknown key{hint}")
    missing = [
        name
        for name, f in fields.items()
        if name not in raw
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise error(f"{_join(where, missing[0])}: required")
    kwargs = {
        key: coerce(value, hints[key], _join(where, key), error) for key, value in raw.items()
    }
    return cls(**kwargs)


def coerce(value: Any, hint: Any, path: str, error: type[Exception] = ConfigError) -> Any:
    """Check one value against a type hint; build dataclasses; lists become tuples."""
    if dataclasses.is_dataclass(value):
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, value if value is not None else {}, path, error)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for option in non_none:
            try:
                return coerce(value, option, path, error)
            except error as exc:
                errors.append(str(exc))
        raise error(errors[0] if len(errors) == 1 else f"{path}: unexpected value {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise error(f"{path}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(coerce(v, item, f"{path}[{i}]", error) for i, v in enumerate(value))
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise error(f"{path}: expected one of {choices}, got {value!r}")
        return value
    if hint is bool and not isinstance(value, bool):
        raise error(f"{path}: expected true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise error(f"{path}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, str):  # YAML reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"{path}: expected a number, got {value!r}")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise error(f"{path}: expected a string, got {value!r}")
    return value


def to_plain(value: Any) -> Any:
    """A dataclass (or nested containers) as plain YAML/JSON-serialisable data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)
