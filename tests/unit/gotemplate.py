"""A tiny evaluator for the subset of Go's text/template that the Ollama export emits.

Go is not available on the test machines; this lets the tests *execute* an exported
Ollama TEMPLATE and compare it with ``template.render``. Supported: text, ``{{ "lit" }}``,
``.Content .Role .System $.System $.Messages``, variables (``:=`` and ``=``), ``if`` /
``else if`` / ``else`` / ``end``, ``range $i, $_ := .Messages``, and the functions ``eq``,
``gt``, ``and``, ``not``, ``len``, ``slice``.
"""

from __future__ import annotations

import json
import re
from typing import Any

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_ATOM = re.compile(r'\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+')


def _parse(src: str) -> list:
    """Nested nodes: ('text', s) | ('expr', e) | ('set', var, e) | ('if', [(cond, body)], else)
    | ('range', ivar, body)."""
    tokens = []
    pos = 0
    for m in _ACTION.finditer(src):
        if m.start() > pos:
            tokens.append(("text", src[pos : m.start()]))
        tokens.append(("action", m.group(1).strip()))
        pos = m.end()
    if pos < len(src):
        tokens.append(("text", src[pos:]))
    nodes, rest = _block(tokens, 0)
    assert rest == len(tokens), "unbalanced template"
    return nodes


def _block(tokens: list, i: int) -> tuple[list, int]:
    nodes: list = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            nodes.append(("text", value))
            i += 1
            continue
        if value == "end" or value == "else" or value.startswith("else if "):
            return nodes, i
        if value.startswith("if "):
            branches = []
            cond = value[3:]
            while True:
                body, i = _block(tokens, i + 1)
                branches.append((cond, body))
                stop = tokens[i][1]
                if stop.startswith("else if "):
                    cond = stop[len("else if ") :]
                    continue
                if stop == "else":
                    else_body, i = _block(tokens, i + 1)
                    assert tokens[i][1] == "end"
                    nodes.append(("if", branches, else_body))
                else:
                    nodes.append(("if", branches, []))
                i += 1
                break
            continue
        m = re.fullmatch(r"range (\$\w+), \$_ := \.Messages", value)
        if m:
            body, i = _block(tokens, i + 1)
            assert tokens[i][1] == "end"
            nodes.append(("range", m.group(1), body))
            i += 1
            continue
        m = re.fullmatch(r"(\$\w+) :?= (.+)", value)
        if m:
            nodes.append(("set", m.group(1), m.group(2)))
            i += 1
            continue
        nodes.append(("expr", value))
        i += 1
    return nodes, i


def _eval(expr: str, scope: dict[str, Any]) -> Any:
    atoms = _ATOM.findall(expr)
    value, rest = _call(atoms, 0, scope)
    assert rest == len(atoms), f"trailing atoms in {expr!r}"
    return value


_FUNCS = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "and": lambda a, b: b if a else a,
    "not": lambda a: not a,
    "len": len,
    "slice": lambda x, i: x[i:],
}


def _call(atoms: list[str], i: int, scope: dict[str, Any]) -> tuple[Any, int]:
    head = atoms[i]
    if head in _FUNCS:
        fn = _FUNCS[head]
        args = []
        i += 1
        while i < len(atoms) and atoms[i] != ")":
            value, i = _operand(atoms, i, scope)
            args.append(value)
        return fn(*args), i
    return _operand(atoms, i, scope)


def _operand(atoms: list[str], i: int, scope: dict[str, Any]) -> tuple[Any, int]:
    atom = atoms[i]
    if atom == "(":
        value, i = _call(atoms, i + 1, scope)
        assert atoms[i] == ")"
        return value, i + 1
    if atom.startswith('"'):
        return json.loads(atom), i + 1
    if atom.isdigit():
        return int(atom), i + 1
    if atom in ("true", "false"):
        return atom == "true", i + 1
    if atom.startswith("$."):
        return scope["$"][atom[2:]], i + 1
    if atom.startswith("$"):
        return scope[atom], i + 1
    if atom.startswith("."):
        return scope["."][atom[1:]], i + 1
    raise AssertionError(f"unsupported atom {atom!r}")


def _run(nodes: list, scope: dict[str, Any], out: list[str]) -> None:
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "expr":
            out.append(str(_eval(node[1], scope)))
        elif kind == "set":
            scope[node[1]] = _eval(node[2], scope)
        elif kind == "if":
            for cond, body in node[1]:
                if _eval(cond, scope):
                    _run(body, scope, out)
                    break
            else:
                _run(node[2], scope, out)
        elif kind == "range":
            outer = scope["."]
            for index, message in enumerate(scope["$"]["Messages"]):
                scope[node[1]] = index
                scope["."] = message
                _run(node[2], scope, out)
            scope["."] = outer


def render_go(src: str, system: str, messages: list[dict[str, str]]) -> str:
    """Render like Ollama: ``.System`` and ``.Messages`` of ``{Role, Content}``."""
    data = {
        "System": system,
        "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages],
    }
    out: list[str] = []
    _run(_parse(src), {"$": data, ".": data}, out)
    return "".join(out)
