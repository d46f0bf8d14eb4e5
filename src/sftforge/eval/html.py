"""Result folders for the check commands: ``results.json`` plus ``report.html``, built from
dict rows on the shared helpers of :mod:`sftforge.eval.report_html`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sftforge.eval import report_html as R

esc = R.esc

VERDICT_CSS = (
    ".verdict{font-weight:600;padding:.4rem .8rem;border-radius:6px;display:inline-block}"
    ".pass{background:#dafbe1;color:#116329}.fail{background:#ffebe9;color:#82071e}"
)

figure_png = R.png_img
plt = R.pyplot


def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None) -> list[str]:
    return list(columns or (rows[0].keys() if rows else []))


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An HTML table of dict rows."""
    cols = _columns(rows, columns)
    if not rows:
        return '<p class="muted">(no rows)</p>'
    return R.html_table(cols, [[r.get(c, "") for c in cols] for r in rows], digits=4)


def text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """The same rows as a terminal table."""
    cols = _columns(rows, columns)
    return R.text_table(cols, [[r.get(c, "") for c in cols] for r in rows], digits=4)


def verdict(message: str, ok: bool) -> str:
    return f'<p class="verdict {"pass" if ok else "fail"}">{R.esc(message)}</p>'


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    body = "\n".join(f"<h2>{R.esc(h)}</h2>\n{b}" if h else b for h, b in sections)
    return R.page(title, body, VERDICT_CSS)


def write_results(out: str | Path, results: Mapping[str, Any], html_page: str) -> Path:
    """``results.json`` and ``report.html`` in ``out``; returns the folder."""
    from sftforge.fsutil import atomic_write_text, output_dir

    out = output_dir(out)
    text = json.dumps(results, ensure_ascii=False, indent=2, default=str) + "\n"
    atomic_write_text(out / "results.json", text)
    atomic_write_text(out / "report.html", html_page)
    return out
