"""Small self-contained HTML pages for eval results: tables and embedded plots.

Every eval writes ``results.json`` and ``report.html`` into its output folder; pages have no
external assets, so they open from disk and can be attached to a message.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-weight:600;padding:.4rem .8rem;border-radius:4px;display:inline-block}
.pass{background:#e3f6e5;color:#14532d}.fail{background:#fde8e8;color:#7f1d1d}
pre{white-space:pre-wrap;background:#f8f8f8;padding:.5rem;border-radius:4px}
"""


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An HTML table of dict rows (numbers right-aligned)."""
    if not rows:
        return "<p><em>(no rows)</em></p>"
    columns = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c, "")
            cls = ' class="num"' if isinstance(v, (int, float)) else ""
            cells.append(f"<td{cls}>{html.escape(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure_png(fig: Any) -> str:
    """A matplotlib figure as an inline <img>."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def verdict(text: str, ok: bool) -> str:
    return f'<p class="verdict {"pass" if ok else "fail"}">{html.escape(text)}</p>'


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    parts = [f"<h2>{html.escape(h)}</h2>\n{body}" if h else body for h, body in sections]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        + "\n".join(parts)
        + "</body></html>"
    )


def write_results(out: str | Path, results: Mapping[str, Any], html_page: str) -> Path:
    """``results.json`` and ``report.html`` in ``out``; returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps(results, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8"
    )
    (out / "report.html").write_text(html_page, encoding="utf-8")
    return out


def plt():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot
