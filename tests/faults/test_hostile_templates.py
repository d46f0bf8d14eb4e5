"""A corpus of hostile chat templates, through every path that accepts a template.

Each payload must end in a :class:`TemplateError` that names where the template came from,
within the sandbox's time budget (set to 1 s here) and a memory bound, without running
anything or reading any other file.
"""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest

from sftforge.cli import main
from sftforge.errors import TemplateError
from sftforge.templates import load_template, sandbox
from sftforge.templates.base import UnrenderableConversation
from sftforge.templates.jinja import JinjaChatTemplate
from sftforge.templates.registry import template_from_dict

MSGS = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]

#: name -> (template source, what the error says)
HOSTILE = {
    "constant folding": ("{{ 3 ** (3 ** 17) }}", "bits"),
    "folded product": ("{{ 'A' * 200000000 }}", "characters"),
    "nested ranges": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                      "{% endfor %}", "took longer"),
    "huge range": ("{{ range(10**9) | list }}", "range"),
    "recursion": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursed"),
    "exponential macro": ("{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}"
                          "{% endmacro %}{{ f(60) }}", "took longer"),
    "include": ("{% include '/etc/passwd' %}", "not allowed"),
    "import": ("{% import 'x' as y %}", "not allowed"),
    "from import": ("{% from 'x' import y %}", "not allowed"),
    "extends": ("{% extends 'base.html' %}", "not allowed"),
    "tilde doubling": ("{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "characters"),
    "plus doubling": ("{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
                      "{% set ns.s = ns.s + ns.s %}{% endfor %}", "characters"),
    "list doubling": ("{% set ns = namespace(s=[1]) %}{% for i in range(60) %}"
                      "{% set ns.s = ns.s + ns.s %}{% endfor %}", "list"),
    "int squaring": ("{% set ns = namespace(x=3) %}{% for i in range(60) %}"
                     "{% set ns.x = ns.x * ns.x %}{% endfor %}", "bits"),
    "str.center": ("{{ 'a'.center(10**9) }}", "characters"),
    "center filter": ("{{ 'a' | center(10**9) }}", "center"),
    "percent width": ("{{ '%999999999d' % 1 }}", "width"),
    "format width": ("{{ '{:>999999999}'.format(1) }}", "width"),
    "replace blow-up": ("{{ ('x' * 1000000).replace('x', 'x' * 1000000) }}", "characters"),
    "join blow-up": ("{{ ('x' * 1000000) | list | join('y' * 1000) }}", "characters"),
    "indent blow-up": ("{{ ('x\n' * 1000000) | indent('y' * 1000) }}", "characters"),
    "tojson indent": ("{{ messages | tojson(indent=10**9) }}", "tojson"),
    "string loops": ("{% for a in 'x' * 1000000 %}{% for b in 'x' * 1000000 %}{% endfor %}"
                     "{% endfor %}", "took longer"),
    "class escape": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    "cycler escape": ("{{ cycler.__init__.__globals__.os.system('touch /tmp/pwned') }}",
                      "unsafe"),
    "list.append": ("{% set l = [] %}{{ l.append(1) }}", "unsafe"),
    "set-block doubling": ("{% set ns = namespace(x='ab') %}{% for i in range(60) %}"
                           "{% set t %}{{ ns.x }}{{ ns.x }}{% endset %}{% set ns.x = t %}"
                           "{% endfor %}", "captured output"),
    "macro doubling": ("{% macro twice(s) %}{{ s }}{{ s }}{% endmacro %}"
                       "{% set ns = namespace(x='ab') %}{% for i in range(60) %}"
                       "{% set ns.x = twice(ns.x) %}{% endfor %}", "captured output"),
    "caller doubling": ("{% macro m() %}{{ caller() }}{{ caller() }}{% endmacro %}"
                        "{% set ns = namespace(x='ab') %}{% for i in range(60) %}{% set t %}"
                        "{% call m() %}{{ ns.x }}{% endcall %}{% endset %}{% set ns.x = t %}"
                        "{% endfor %}", "captured output"),
    "batch fill folded at compile": ("{{ [1] | batch(1000000000, 'x') | list }}", "batch"),
    "slice count": ("{{ [1] | slice(1000000000) | list }}", "slice"),
    "lipsum": ("{{ lipsum(n=100000000) }}", "undefined"),
    "nested format width": ("{{ '{0:>{1}}'.format('a', 1000000000) }}", "nested"),
    "mapping percent width": ("{{ '%(a)999999999s' % {'a': 1} }}", "width"),
    "percent precision": ("{{ '%.999999999f' % 1.0 }}", "width"),
    "filter through map": ("{{ messages | map('tojson', indent=10**9) | list }}", "map"),
    "list growth": ("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
                    "{% set ns.l = ns.l + [i] %}{% endfor %}", "took longer"),
    "deep parentheses": ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "recursed"),
    "block recursion": ("{% block a %}{{ self.a() }}{% endblock %}", "recursed"),
    "syntax error": ("{% for %}", "does not compile"),
    "raise_exception": ("{{ raise_exception('no') }}", "no"),
}  # fmt: skip


#: Reads the sandbox answers with an empty value (jinja's unsafe Undefined) or an error.
ESCAPES = {
    "globals": "{{ raise_exception.__globals__ }}",
    "self dict": "{{ self.__dict__ }}",
    "func code": "{{ raise_exception.__code__.co_consts }}",
    "namespace class": "{{ namespace.__class__.__subclasses__() }}",
    "loop internals": "{% for m in messages %}{{ loop.__class__.__init__.__globals__ }}"
    "{% endfor %}",
    "format attribute": "{{ '{0.__class__.__init__.__globals__}'.format(messages) }}",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_attribute_escapes_reach_nothing(name):
    try:
        out = JinjaChatTemplate(ESCAPES[name], origin="escape").render(MSGS)
    except TemplateError as exc:
        assert "escape" in str(exc)
        return
    except UnrenderableConversation:
        return  # rendered nothing of the answer: refused, and nothing leaked either
    for leak in ("<function", "<module", "builtins", "<class", "co_", "os."):
        assert leak not in out


@pytest.fixture(autouse=True)
def short_budget(monkeypatch):
    monkeypatch.setattr(sandbox, "TIME_BUDGET", 1.0)


def _bounded(fn):
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TemplateError) as info:
            fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    assert elapsed < 4.0, f"took {elapsed:.1f} s"
    assert peak < 200e6, f"peak {peak / 1e6:.0f} MB"
    return str(info.value)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_direct_compile_and_render(name):
    source, says = HOSTILE[name]

    def run():
        t = JinjaChatTemplate(source, origin=f"corpus:{name}")
        t.render(MSGS)

    message = _bounded(run)
    assert f"corpus:{name}" in message and says in message


@pytest.mark.parametrize("name", ["constant folding", "nested ranges", "include", "plus doubling"])
def test_through_a_template_json(name, tmp_path):
    path = tmp_path / "template.json"
    path.write_text(json.dumps({"type": "jinja", "name": "x", "chat_template": HOSTILE[name][0]}))
    message = _bounded(lambda: load_template(path).render(MSGS))
    assert HOSTILE[name][1] in message


@pytest.mark.parametrize("name", ["constant folding", "exponential macro", "tilde doubling"])
def test_through_a_tokenizer_folder_and_the_cli(name, tmp_path, tokenizer_path, capsys):
    """A tokenizer folder whose tokenizer_config.json carries a hostile chat_template,
    used as `--template hf --tokenizer DIR` by `templates render` and `encode`."""
    from sftforge.tokenizer import load_tokenizer

    folder = tmp_path / "tok"
    load_tokenizer(str(tokenizer_path("smollm2"))).save_pretrained(str(folder))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = HOSTILE[name][0]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps({"messages": MSGS}))
    started = time.monotonic()
    assert main(["templates", "render", "hf", "--tokenizer", str(folder), "--input",
                 str(conv)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert HOSTILE[name][1] in err and "Traceback" not in err
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"messages": MSGS}) + "\n")
    out = tmp_path / "enc.jsonl"
    code = main(["encode", "--template", "hf", "--tokenizer", str(folder), str(data),
                 "--output", str(out), "--errors", "raise"])  # fmt: skip
    assert code == 2 and HOSTILE[name][1] in capsys.readouterr().err
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("data", [[], "x", {"type": "jinja"}, {"type": "jinja", "chat_template": 5},
                                  {"type": "builtin", "name": 3}, {"type": "python"}])  # fmt: skip
def test_malformed_template_definitions_are_template_errors(data):
    with pytest.raises(TemplateError):
        template_from_dict(data)


def test_honest_templates_still_render_and_the_budget_is_released():
    t = JinjaChatTemplate("{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}\n"
                          "{% endfor %}", origin="honest")  # fmt: skip
    for _ in range(3):
        assert t.render(MSGS) == "user: hi\nassistant: hello\n"
    time.sleep(1.3)  # past the budget: no interruption may land outside a render
    assert sum(range(10)) == 45
