"""Small shared helpers for evaluation reports: a plain-text table for the terminal, HTML
tables, a self-contained page and matplotlib figures embedded as base64 PNG (one file to
open or send, no side files)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK SC",sans-serif;
 margin:2rem auto;max-width:1200px;color:#1f2328;padding:0 1rem;line-height:1.45}
h1{font-size:1.6rem} h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa} .num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%} .muted{color:#656d76;font-size:.85rem}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:.4rem .7rem;border-radius:6px}
pre,.text{white-space:pre-wrap;word-break:break-word}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;border-radius:6px}
"""

Cell = Any


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt_cell(value: Cell, digits: int = 3) -> str:
    """Floats rounded, ``None`` as a dash: the same rendering in text and HTML tables."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _is_num(value: Cell) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], digits: int = 3) -> str:
    """A fixed-width table for the terminal; numbers right-aligned."""
    cells = [[fmt_cell(v, digits) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], _display_width(cell))
    numeric = [
        bool(rows) and all(_is_num(r[i]) or r[i] is None for r in rows) for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(values):
            pad = " " * (widths[i] - _display_width(v))
            out.append(pad + v if numeric[i] else v + pad)
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), sep, *(line(r) for r in cells)])


def _display_width(text: str) -> int:
    # CJK characters take two terminal columns; without this Chinese subject names misalign.
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], digits: int = 3) -> str:
    """An HTML table; numeric cells get the ``num`` class (right-aligned)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        tds = "".join(
            f'<td class="num">{esc(fmt_cell(v, digits))}</td>'
            if _is_num(v)
            else f"<td>{esc(fmt_cell(v, digits))}</td>"
            for v in row
        )
        body.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def png_img(fig: Any, alt: str = "plot") -> str:
    """A matplotlib figure as an inline ``<img>`` (and the figure closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (servers have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def page(title: str, body: str, extra_css: str = "") -> str:
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}{extra_css}</style></head>"
        f"<body><h1>{esc(title)}</h1>\n{body}\n</body></html>\n"
    )


def write_page(path: str | Path, title: str, body: str, extra_css: str = "") -> Path:
    from sftforge.fsutil import atomic_write_text

    return atomic_write_text(Path(path), page(title, body, extra_css))
