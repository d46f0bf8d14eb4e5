"""The dataset report: one self-contained HTML page with plots people can look at.

Plots (matplotlib, embedded as PNG): token length distributions per source, assistant
turns per conversation, language mix and source mix, records through each stage, drop
reasons; then duplicate clusters with examples and the manifest.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to memory
import matplotlib.pyplot as plt

from sftforge.data.stats import DatasetStats

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK SC",sans-serif;
 margin:2rem auto;max-width:1100px;color:#1f2328;padding:0 1rem}
h1{font-size:1.6rem} h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa} .num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1rem} img{max-width:100%}
.snip{font-family:ui-monospace,monospace;font-size:.8rem;white-space:pre-wrap;max-width:480px}
.ok{color:#1a7f37} .bad{color:#cf222e} pre{background:#f6f8fa;padding:.6rem;overflow:auto}
"""


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _esc(value: Any) -> str:
    return html.escape(str(value))


def plot_lengths(stats: DatasetStats) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, s in sorted(stats.sources.items()):
        if s.lengths:
            ax.hist(s.lengths, bins=40, histtype="step", linewidth=1.5, label=name)
    ax.set_xlabel(f"length ({stats.length_unit})")
    ax.set_ylabel("samples")
    ax.set_title("Length distribution per source")
    if stats.sources:
        ax.legend(fontsize=7)
    return _png(fig)


def plot_turns(stats: DatasetStats) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = sorted(n for n, s in stats.sources.items() if s.turns)
    max_turns = max((max(s.turns) for s in stats.sources.values() if s.turns), default=1)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        turns = stats.sources[name].turns
        xs = list(range(1, max_turns + 1))
        ax.bar([x + i * width for x in xs], [turns.get(x, 0) for x in xs], width, label=name)
    ax.set_xlabel("assistant turns per conversation")
    ax.set_ylabel("conversations")
    ax.set_title("Turns per conversation")
    if names:
        ax.legend(fontsize=7)
    return _png(fig)


def plot_languages(stats: DatasetStats) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = sorted(stats.sources)
    langs = sorted({lang for s in stats.sources.values() for lang in s.languages})
    bottom = [0.0] * len(names)
    for lang in langs:
        shares = []
        for name in names:
            counts = stats.sources[name].languages
            total = sum(counts.values()) or 1
            shares.append(counts.get(lang, 0) / total)
        ax.barh(names, shares, left=bottom, label=lang)
        bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
    ax.set_xlabel("share of sampled conversations")
    ax.set_title("Detected language per source")
    if langs:
        ax.legend(fontsize=7, ncol=min(6, len(langs)))
    return _png(fig)


def plot_source_mix(stats: DatasetStats) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = sorted(stats.sources)
    splits = sorted({sp for s in stats.sources.values() for sp in s.splits})
    left = [0] * len(names)
    for split in splits:
        counts = [stats.sources[n].splits.get(split, 0) for n in names]
        ax.barh(names, counts, left=left, label=split)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.set_xlabel("samples in the built dataset")
    ax.set_title("Source mix")
    if splits:
        ax.legend(fontsize=7)
    return _png(fig)


def plot_stages(stages: Mapping[str, Mapping[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = list(stages)
    ax.barh(names, [stages[n]["seen"] for n in names], color="#d0d7de", label="seen")
    ax.barh(names, [stages[n]["kept"] for n in names], color="#2da44e", label="kept")
    ax.invert_yaxis()
    ax.set_xlabel("records")
    ax.set_title("Records through each stage")
    ax.legend(fontsize=7)
    return _png(fig)


def plot_drop_reasons(stages: Mapping[str, Mapping[str, Any]]) -> str:
    # Quality drops only: records the mix did not sample are fine records, counted in the
    # stage table, and would otherwise dwarf every real reason.
    sampling = ("not_sampled",)
    rows = [
        (f"{stage}: {reason}", n)
        for stage, counts in stages.items()
        for reason, n in counts["rejected"].items()
        if reason not in sampling
    ]
    not_sampled = sum(c["rejected"].get(r, 0) for c in stages.values() for r in sampling)
    fig, ax = plt.subplots(figsize=(6.4, max(2.0, 0.35 * len(rows) + 1)))
    if rows:
        rows.sort(key=lambda r: r[1])
        ax.barh([r[0] for r in rows], [r[1] for r in rows], color="#cf222e")
        ax.set_xlabel("records dropped")
    else:
        ax.text(0.5, 0.5, "nothing dropped", ha="center", va="center")
        ax.set_axis_off()
    note = f" (not sampled by the mix, not shown: {not_sampled})" if not_sampled else ""
    ax.set_title("Drop reasons" + note)
    return _png(fig)


def _stage_table(stages: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [
        "<tr><th>stage</th><th>seen</th><th>kept</th><th>dropped (reason: n)</th>"
        "<th>reconciles</th></tr>"
    ]
    for name, c in stages.items():
        dropped = ", ".join(f"{r}: {n}" for r, n in sorted(c["rejected"].items())) or "-"
        ok = c["seen"] + c.get("added", 0) == c["kept"] + sum(c["rejected"].values())
        mark = '<span class="ok">yes</span>' if ok else '<span class="bad">NO</span>'
        rows.append(
            f"<tr><td>{_esc(name)}</td><td class=num>{c['seen']}</td>"
            f"<td class=num>{c['kept']}</td><td>{_esc(dropped)}</td><td>{mark}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _clusters_table(clusters: Sequence[Mapping[str, Any]], limit: int = 30) -> str:
    if not clusters:
        return "<p>No duplicate clusters.</p>"
    rows = ["<tr><th>stage</th><th>kept</th><th>removed</th><th>example</th></tr>"]
    for c in clusters[:limit]:
        removed = c.get("removed") or []
        removed_text = "<br>".join(_esc(r) for r in removed[:5])
        if len(removed) > 5:
            removed_text += f"<br>... {len(removed) - 5} more"
        snippet = _esc(str(c.get("snippet", ""))[:300])
        rows.append(
            f"<tr><td>{_esc(c.get('stage', ''))}</td><td>{_esc(c.get('kept', ''))}</td>"
            f"<td>{removed_text}</td><td class=snip>{snippet}</td></tr>"
        )
    more = (
        f"<p>{len(clusters) - limit} more clusters not shown.</p>" if len(clusters) > limit else ""
    )
    return "<table>" + "".join(rows) + "</table>" + more


def write_report(
    path: str | Path,
    *,
    title: str,
    stats: DatasetStats,
    stages: Mapping[str, Mapping[str, Any]],
    clusters: Sequence[Mapping[str, Any]] = (),
    manifest: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Write the HTML report and return its path."""
    path = Path(path)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
    ]
    for note in notes:
        parts.append(f"<p>{_esc(note)}</p>")
    parts.append("<h2>Dataset</h2><div class=grid>")
    parts += [plot_source_mix(stats), plot_lengths(stats), plot_turns(stats), plot_languages(stats)]
    parts.append("</div><h2>Pipeline</h2><div class=grid>")
    parts += [plot_stages(stages), plot_drop_reasons(stages)]
    parts.append("</div>")
    parts.append(_stage_table(stages))
    parts.append("<h2>Duplicate clusters</h2>")
    parts.append(_clusters_table(clusters))
    parts.append("<h2>Per-source statistics</h2><pre>")
    parts.append(_esc(json.dumps(stats.to_dict(), ensure_ascii=False, indent=2)))
    parts.append("</pre>")
    if manifest is not None:
        parts.append("<h2>Manifest</h2><pre>")
        parts.append(_esc(json.dumps(manifest, ensure_ascii=False, indent=2)))
        parts.append("</pre>")
    parts.append("</body></html>\n")
    from sftforge.fsutil import atomic_write_text

    atomic_write_text(path, "\n".join(parts))
    return path
