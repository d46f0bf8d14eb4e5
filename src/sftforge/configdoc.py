"""The reference of every training-config key, recipe key and recipe block, generated from
the typed configs so it cannot drift from the code.

Field documentation is read from the ``#:`` comments above each dataclass field (or a
trailing ``# ...`` comment on its line); block parameters from the blocks' signatures.
``python -m sftforge.configdoc > docs/reference.md`` writes the page; a test checks that
the page in the repository equals what this prints.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from typing import Any

_FIELD = re.compile(r"^\s+(\w+)\s*:\s*[^=]+?(?:=.*?)?(?:\s+#\s*(?P<trail>.*))?$")


def field_docs(cls: type) -> dict[str, str]:
    """``{field: documentation}`` from the ``#:`` comments of a dataclass's source."""
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = _FIELD.match(line)
        if match and not stripped.startswith(("def ", "@", "return", '"""')):
            text = " ".join(pending) or (match.group("trail") or "").strip()
            if text:
                docs[match.group(1)] = text
        pending = []
    return docs


def _dataclass_of(annotation: Any) -> tuple[type | None, bool]:
    """The dataclass inside an annotation (``X``, ``X | None``, ``tuple[X, ...]``) and
    whether it is a list of them."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return annotation, False
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if dataclasses.is_dataclass(arg):
                return arg, False
    if origin is tuple:
        args = typing.get_args(annotation)
        if args and dataclasses.is_dataclass(args[0]):
            return args[0], True
    return None, False


def _type_name(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if not isinstance(annotation, str) and typing.get_args(annotation):
        text = str(annotation)
    text = re.sub(r"typing\.|collections\.abc\.|sftforge\.[\w.]+\.", "", str(text))
    return text.replace("NoneType", "None")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(value):
            return ""
    else:
        return "(required)"
    if isinstance(value, (dict, tuple, list)) and not value:
        return "empty"
    return f"`{value!r}`"


def config_rows(
    cls: type, prefix: str = "", skip: tuple[str, ...] = (), leaves: tuple[type, ...] = ()
) -> list[tuple[str, ...]]:
    """``(key, type, default, documentation)`` for every leaf field of a config class;
    dataclasses in ``leaves`` are one row (a list of blocks, say), not their fields."""
    rows: list[tuple[str, ...]] = []
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        key = f"{prefix}{f.name}"
        inner, many = _dataclass_of(hints[f.name])
        if inner is not None and inner in leaves:
            kind = "list of blocks" if many else inner.__name__
            rows.append((key, kind, _default(f), docs.get(f.name, "")))
            continue
        if inner is not None:
            if docs.get(f.name):
                rows.append((f"{key}{'[]' if many else ''}", "section", "", docs[f.name]))
            rows += config_rows(inner, f"{key}{'[].' if many else '.'}", leaves=leaves)
            continue
        doc = docs.get(f.name, "")
        rows.append((key, _type_name(hints[f.name]), _default(f), doc))
    return rows


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def blocks_reference() -> str:
    """Every cleaning and filter block a recipe can name, with its parameters."""
    from sftforge.data.clean import CLEANERS
    from sftforge.data.filters import BLOCKS, block_params

    out = []
    for name, cls in BLOCKS.items():
        kind = "clean" if name in CLEANERS else "filters"
        summary = " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())
        params = []
        for pname, default in block_params(name).items():
            shown = "(required)" if default is inspect.Parameter.empty else f"`{default!r}`"
            params.append((f"`{pname}`", shown))
        out.append(
            f"### `{name}` ({kind})\n\n{summary}\n\n" + _table(params, ("parameter", "default"))
        )
    return "\n\n".join(out)


def render_reference() -> str:
    from sftforge.data.recipe import BlockSpec, Recipe
    from sftforge.train.config import TrainConfig

    header = ("key", "type", "default", "meaning")
    return (
        "# Configuration reference\n\n"
        "Generated from the typed configs by `python -m sftforge.configdoc > docs/reference.md`\n"
        "(a test checks that this page matches the code). Paths are relative to the config\n"
        "file's folder. Any key can be overridden on the command line as `key.sub=value`.\n\n"
        "## Training config (`sftforge train CONFIG.yaml`)\n\n"
        + _table(config_rows(TrainConfig, skip=("base_dir",)), header)
        + "\n\n## Data recipe (`sftforge data build RECIPE.yaml`)\n\n"
        "`clean` and `filters` are lists of blocks, each a name or `{name: {parameter: value}}`\n"
        "(see the blocks below); `dedup.near`, `dedup.semantic` and `dedup.decontaminate` take\n"
        "the parameters of their blocks. See `docs/data.md` for a guided example.\n\n"
        + _table(config_rows(Recipe, skip=("base_dir",), leaves=(BlockSpec,)), header)
        + "\n\n## Recipe blocks\n\n"
        + blocks_reference()
        + "\n"
    )


if __name__ == "__main__":  # pragma: no cover
    print(render_reference(), end="")
