"""The bounded sandbox every foreign jinja template is compiled and rendered in.

A chat template comes from files a user did not write (a tokenizer folder, a model's
``template.json``), so it is treated as hostile code. jinja's
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` already stops attribute escapes
and mutation of data; this module adds the bounds it lacks:

* **no compile-time work**: the growing operators (``*``, ``**``, ``+``, ``%``) are
  intercepted, which also stops jinja from folding ``3 ** (3 ** 17)`` while compiling;
* **sizes**: every string a template builds (operators, ``~``, filters, ``str``
  methods, the output) is at most :data:`MAX_STRING` characters, every list
  :data:`MAX_ITEMS` items, every integer :data:`MAX_INT_BITS` bits, ``range`` at most
  :data:`MAX_RANGE` numbers; the check comes *before* the allocation;
* **time**: compiling and rendering each run under a deadline (:data:`TIME_BUDGET`
  seconds) enforced by a watchdog thread that interrupts the rendering thread;
* **no other files**: ``include``, ``import``, ``from`` and ``extends`` are refused;
* **one error type**: every failure (limits, recursion, overflow, a template's own
  ``raise_exception``) surfaces as :class:`sftforge.errors.TemplateError` naming where
  the template came from.

Honest chat templates never come near these bounds.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sftforge.errors import TemplateError

#: Characters in any one string a template builds, and in its output.
MAX_STRING = 8 * 1024 * 1024
#: Items in any one list or tuple a template builds.
MAX_ITEMS = 1_000_000
#: Bits of any integer a template computes (``**``, ``*``).
MAX_INT_BITS = 65_536
#: Numbers in one ``range`` (jinja's own sandbox limit).
MAX_RANGE = 100_000
#: Characters of template source accepted for compiling.
MAX_SOURCE = 1_000_000
#: Seconds one compile or one render may take (``SFTFORGE_TEMPLATE_TIME_BUDGET``).
TIME_BUDGET = float(os.environ.get("SFTFORGE_TEMPLATE_TIME_BUDGET", "5"))
#: Width-like integer arguments of filters (``indent``, ``center``, ``tojson(indent)``).
MAX_WIDTH = 10_000

T = TypeVar("T")


class TemplateLimitError(jinja2.exceptions.SecurityError):
    """A template went past one of the sandbox's bounds."""


class _Timeout(BaseException):
    """Raised asynchronously in a thread whose compile or render ran out of time.
    A BaseException, so a template's own code paths cannot swallow it."""


# -- size checks ------------------------------------------------------------------------------
def _check_len(n: int, what: str) -> None:
    if n > MAX_STRING:
        raise TemplateLimitError(f"{what} would be {n:,} characters (limit {MAX_STRING:,})")


def _sized(value: Any, what: str) -> Any:
    if isinstance(value, str):
        _check_len(len(value), what)
    elif isinstance(value, (list, tuple, range)) and len(value) > MAX_ITEMS:
        raise TemplateLimitError(f"{what} would hold {len(value):,} items (limit {MAX_ITEMS:,})")
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(f"{what}: integer over {MAX_INT_BITS:,} bits")
    return value


def _repeat_size(seq: Any, times: Any) -> None:
    if isinstance(times, int) and isinstance(seq, (str, list, tuple)):
        n = len(seq) * max(times, 0)
        if isinstance(seq, str):
            _check_len(n, "a repeated string")
        elif n > MAX_ITEMS:
            raise TemplateLimitError(f"a repeated list would hold {n:,} items")


#: A printf-style conversion: optional mapping key, flags, width, precision, type.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?[a-zA-Z%]")


def _check_width(number: str | None) -> None:
    if number == "*":
        raise TemplateLimitError("'*' widths are not allowed in template formats")
    if number and int(number) > MAX_WIDTH:
        raise TemplateLimitError(f"format width {number} over {MAX_WIDTH:,}")


def _check_percent_format(fmt: str) -> None:
    """``'%10s' % x``: every width and precision at most :data:`MAX_WIDTH`."""
    for match in _PERCENT_SPEC.finditer(fmt):
        for group in match.groups():
            _check_width(group)


def _check_brace_format(fmt: str) -> None:
    """``'{:>10}'.format(x)``: widths at most :data:`MAX_WIDTH`, and no width taken from
    an argument (``{0:{1}}``), which could not be checked before formatting."""
    import string

    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error itself
    for _literal, _field, spec, _conversion in fields:
        if not spec:
            continue
        if "{" in spec:
            raise TemplateLimitError("nested replacement fields in a format spec")
        for number in re.findall(r"\d+", spec):
            _check_width(number)


def _binop(op: str, left: Any, right: Any) -> Any:
    if op == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0:
            bits = max(abs(left).bit_length(), 1) * right
            if abs(left) > 1 and bits > MAX_INT_BITS:
                raise TemplateLimitError(f"{left} ** {right} is over {MAX_INT_BITS:,} bits")
        return _sized(left**right, "a power")
    if op == "*":
        _repeat_size(left, right)
        _repeat_size(right, left)
        both_ints = isinstance(left, int) and isinstance(right, int)
        if both_ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"a product over {MAX_INT_BITS:,} bits")
        return left * right
    if op == "+":
        if isinstance(left, str) and isinstance(right, str):
            _check_len(len(left) + len(right), "a concatenation")
        elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            _sized(range(len(left) + len(right)), "a concatenated list")
        return left + right
    if op == "%":
        if isinstance(left, str):
            _check_percent_format(left)
            return _sized(left % right, "a formatted string")
        return left % right
    raise TemplateLimitError(f"operator {op!r}")  # pragma: no cover - only those above


def _call_binop(context: Any, operator: str, left: Any, right: Any) -> Any:
    return _binop(operator, left, right)


def _checked_sum(value: Any) -> Any:
    """The result of a template's ``+`` that is not a short string: sized, or refused."""
    return _sized(value, "a concatenation")


def bounded_join(parts: Iterable[Any]) -> str:
    """jinja's ``~`` (string concatenation), sized before it is built."""
    strs = [p if isinstance(p, str) else str(p) for p in parts]
    _check_len(sum(map(len, strs)), "a '~' concatenation")
    return "".join(strs)


def bounded_concat(parts: Iterable[Any]) -> str:
    """What jinja joins captured output with (``{% set x %}...{% endset %}``, macro
    bodies, ``caller()``, filter blocks): sized like every other string."""
    strs = list(parts)
    _check_len(sum(map(len, strs)), "captured output")
    return "".join(strs)


def bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise TemplateLimitError(f"range of {len(r):,} numbers (limit {MAX_RANGE:,})")
    return r


# -- str methods and filters that grow their input -------------------------------------------
def _check_str_method(self_: str, name: str, args: tuple, kwargs: dict) -> None:
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        _check_len(args[0], f"str.{name}")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            _check_len(len(self_) * max(size, 1), "str.expandtabs")
    elif name == "replace" and len(args) >= 2:
        _check_replace(self_, args[0], args[1], args[2] if len(args) > 2 else -1)
    elif name in ("format", "format_map"):
        _check_brace_format(self_)


def _check_replace(s: Any, old: Any, new: Any, count: Any = -1) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        hits = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        _check_len(len(s) + hits * (len(new) - len(old)), "a replace")


def _checked_join_items(seq: Any, sep: Any) -> list[Any]:
    """The items of a join, after checking the joined string's size."""
    items = list(seq)
    if len(items) > MAX_ITEMS:
        raise TemplateLimitError(f"a join of {len(items):,} items")
    size = len(str(sep)) * max(len(items) - 1, 0)
    size += sum(len(x) if isinstance(x, str) else len(str(x)) for x in items)
    _check_len(size, "a join")
    return items


def _wrap_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter with its growth checked before (arguments) and after (result)."""
    pass_arg = getattr(fn, "jinja_pass_arg", None)

    def checked(*args: Any, **kwargs: Any) -> Any:
        # Filters marked pass_context/pass_eval_context/pass_environment get it first.
        values = args[1:] if pass_arg is not None else args
        for v in (*values[1:], *kwargs.values()):  # counts, widths, fill sizes: all small
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_RANGE:
                raise TemplateLimitError(f"filter {name}: argument {v} over {MAX_RANGE:,}")
        if name in ("indent", "center", "tojson", "wordwrap", "truncate"):
            for v in (*values[1:], *kwargs.values()):
                if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_WIDTH:
                    raise TemplateLimitError(f"filter {name}: argument {v} over {MAX_WIDTH:,}")
                if isinstance(v, str) and name == "indent" and values:
                    lines = str(values[0]).count("\n") + 1
                    _check_len(len(str(values[0])) + lines * len(v), "filter indent")
        elif name == "replace" and len(values) >= 3:
            _check_replace(str(values[0]), values[1], values[2], *values[3:4])
        elif name == "format" and values and isinstance(values[0], str):
            _check_percent_format(values[0])
        elif name == "join" and values:
            sep = values[1] if len(values) > 1 else kwargs.get("d", "")
            items = _checked_join_items(values[0], sep)
            args = (*args[: len(args) - len(values)], items, *values[1:])
        return _sized(fn(*args, **kwargs), f"filter {name}")

    for attr in ("jinja_pass_arg",):
        if hasattr(fn, attr):
            setattr(checked, attr, getattr(fn, attr))
    checked.__name__ = getattr(fn, "__name__", name)
    return checked


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles ``a ~ b`` to :func:`bounded_join` (jinja's own join is unchecked) and
    ``a + b`` to an inline check (the most common operator in chat templates, so no call
    in the common case): a string result within :data:`MAX_STRING` passes as it is, any
    other result goes through :func:`_checked_sum`. A sum is at most twice the limit
    before it is checked, so a doubling loop stops at its first step past the limit."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        self.writeline("_sf_checked_sum = environment.checked_sum")
        super().visit_Template(node, frame)

    def visit_Add(self, node: nodes.Add, frame: Frame) -> None:
        self.write("(_sf_t if type(_sf_t := (")
        self.visit(node.left, frame)
        self.write(") + (")
        self.visit(node.right, frame)
        self.write(f")) is str and len(_sf_t) <= {MAX_STRING} else _sf_checked_sum(_sf_t))")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with size bounds on everything that can grow."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BoundedCodeGenerator
    concat = staticmethod(bounded_concat)  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bounded_join = bounded_join
        self.checked_sum = _checked_sum
        # An instance attribute, not a method: compiled templates call it for every '+',
        # and a plain function skips building a bound method each time.
        self.call_binop = _call_binop  # type: ignore[method-assign]
        self.globals["range"] = bounded_range
        self.globals.pop("lipsum", None)  # generates text in a loop; no chat template uses it
        self.filters = {name: _wrap_filter(name, fn) for name, fn in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return _call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        inner = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(inner, "__self__", None)
        if isinstance(owner, str):
            name = getattr(inner, "__name__", "")
            if name == "join" and args:
                args = (_checked_join_items(args[0], owner), *args[1:])
            else:
                _check_str_method(owner, name, args, kwargs)
        return _sized(super().call(__context, __obj, *args, **kwargs), "a call's result")


_FOREIGN_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


def check_source(env: BoundedEnvironment, source: str) -> None:
    """Refuse what a chat template never needs: other files, and absurd sizes."""
    if len(source) > MAX_SOURCE:
        raise TemplateLimitError(f"template source of {len(source):,} characters")
    tree = env.parse(source)
    for node in tree.find_all(_FOREIGN_NODES):
        kind = type(node).__name__.lower()
        raise TemplateLimitError(
            f"line {node.lineno}: '{kind}' is not allowed (a chat template reads no other file)"
        )


# -- time budget -------------------------------------------------------------------------------
class _Watchdog:
    """One daemon thread that interrupts threads whose deadline passed.

    A deadline is armed around each compile and render; when it passes, the thread gets
    :class:`_Timeout` raised at its next bytecode (``PyThreadState_SetAsyncExc``). Disarming
    under the lock withdraws an interruption that was sent but not yet delivered, so it can
    never land outside the guarded block.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.deadlines: dict[int, list[Any]] = {}  # thread id -> [deadline, fired]
        self.thread: threading.Thread | None = None
        self.wake = threading.Event()

    def _run(self) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                pending = [d for d, _ in self.deadlines.values()]
                for tid, entry in self.deadlines.items():
                    if not entry[1] and entry[0] <= now:
                        entry[1] = True
                        _async_raise(tid, _Timeout)
            wait = min(pending, default=now + 1.0) - time.monotonic()
            self.wake.wait(timeout=min(max(wait, 0.01), 1.0))
            self.wake.clear()

    def arm(self, seconds: float) -> int | None:
        """Start a deadline for this thread; None when one already runs (an outer compile
        or conversation holds it, and its budget covers the inner renders)."""
        tid = threading.get_ident()
        if tid in self.deadlines:  # only this thread adds or removes its own entry
            return None
        with self.lock:
            self.deadlines[tid] = [time.monotonic() + seconds, False]
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="template-watchdog",
                                               daemon=True)  # fmt: skip
                self.thread.start()
        return tid

    def disarm(self, tid: int | None) -> None:
        if tid is None:
            return
        with self.lock:
            entry = self.deadlines.pop(tid, None)
            if entry is not None and entry[1]:
                _async_raise(tid, None)  # withdraw one not yet delivered


def _async_raise(tid: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(tid), ctypes.py_object(exc) if exc is not None else None
    )


_WATCHDOG = _Watchdog()


def _as_template_error(exc: BaseException, where: str, action: str, budget: float) -> BaseException:
    """The :class:`TemplateError` a compile or render failure is reported as."""
    if isinstance(exc, TemplateError):
        return exc
    if isinstance(exc, _Timeout):
        return TemplateError(
            f"{where}: {action} took longer than {budget:g} s (the sandbox's time budget; "
            "SFTFORGE_TEMPLATE_TIME_BUDGET sets it)"
        )
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return TemplateError(f"{where} does not compile: {exc.message} (line {exc.lineno})")
    if isinstance(exc, TemplateLimitError):
        return TemplateError(f"{where}: {action} refused by the sandbox: {exc}")
    if isinstance(exc, RecursionError):
        return TemplateError(f"{where}: {action} recursed too deeply")
    if isinstance(exc, MemoryError):
        return TemplateError(f"{where}: {action} ran out of memory")
    if isinstance(exc, jinja2.TemplateError):
        return TemplateError(f"{where} failed to {action}: {exc}")
    if isinstance(exc, Exception):
        return TemplateError(f"{where} failed to {action}: {type(exc).__name__}: {exc}")
    return exc  # KeyboardInterrupt, SystemExit: not the template's doing


def bounded(fn: Callable[[], T], *, origin: str, action: str, seconds: float | None = None) -> T:
    """Run ``fn`` (a compile or a render) within the time budget; every failure becomes a
    :class:`TemplateError` that names ``origin``."""
    with one_deadline(origin, action, seconds):
        return fn()


@contextmanager
def one_deadline(
    origin: str, action: str = "render", seconds: float | None = None
) -> Iterator[None]:
    """One time budget for a block (a compile, or a group of renders such as a
    conversation's prefixes, so each render inside need not arm its own); failures become
    a :class:`TemplateError` that names ``origin``."""
    budget = TIME_BUDGET if seconds is None else seconds
    try:
        tid = _WATCHDOG.arm(budget)
        try:
            yield
        finally:
            _WATCHDOG.disarm(tid)
    except BaseException as exc:
        if isinstance(exc, _Timeout):
            _WATCHDOG.disarm(threading.get_ident())
        where = f"chat template from {origin}" if origin else "chat template"
        raise _as_template_error(exc, where, action, budget) from None


def make_environment(
    extensions: Iterable[Any] = (),
    filters: dict[str, Callable[..., Any]] | None = None,
    globals_: dict[str, Any] | None = None,
) -> BoundedEnvironment:
    """A bounded environment configured like transformers' (trim_blocks, lstrip_blocks);
    extra ``filters`` are bounded like the built-in ones."""
    env = BoundedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[*extensions, jinja2.ext.loopcontrols],
    )
    for name, fn in (filters or {}).items():
        env.filters[name] = _wrap_filter(name, fn)
    env.globals.update(globals_ or {})
    return env


def compile_bounded(env: BoundedEnvironment, source: str, origin: str) -> jinja2.Template:
    """Check and compile ``source`` within the time budget."""

    def run() -> jinja2.Template:
        if not isinstance(source, str):
            raise TemplateLimitError("the template is not a string")
        check_source(env, source)
        return env.from_string(source)

    return bounded(run, origin=origin, action="compile")


def render_bounded(template: jinja2.Template, origin: str, **context: Any) -> str:
    """Render with the output size checked chunk by chunk, within the time budget (the
    compiled render function is driven directly: ``Template.generate`` would wrap it in a
    second generator, and every failure is mapped here anyway)."""
    try:
        tid = _WATCHDOG.arm(TIME_BUDGET)
        try:
            parts: list[str] = []
            size = 0
            for chunk in template.root_render_func(template.new_context(context)):
                size += len(chunk)
                if size > MAX_STRING:
                    raise TemplateLimitError(f"output over {MAX_STRING:,} characters")
                parts.append(chunk)
            return "".join(parts)
        finally:
            _WATCHDOG.disarm(tid)
    except BaseException as exc:  # the same mapping as one_deadline(), inlined: renders are hot
        if isinstance(exc, _Timeout):
            _WATCHDOG.disarm(threading.get_ident())
        where = f"chat template from {origin}" if origin else "chat template"
        raise _as_template_error(exc, where, "render", TIME_BUDGET) from None
