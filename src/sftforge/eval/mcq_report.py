"""Reports of an :func:`sftforge.eval.mcq.evaluate_mcq` result: terminal table, HTML page
with a per-subject bar chart, ``results.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sftforge.eval.report_html import esc, html_table, png_img, pyplot, text_table, write_page

HEADERS = ("benchmark", "subject", "split", "n", "correct", "accuracy")
CHANCE = 0.25  # four options


def table_rows(result: dict[str, Any]) -> list[list[Any]]:
    """One row per subject, then per benchmark its macro and micro rows, then overall."""
    rows: list[list[Any]] = []
    for bench, data in result["benchmarks"].items():
        for subject, s in data["subjects"].items():
            rows.append([bench, subject, s["split"], s["n"], s["correct"], s["accuracy"]])
        rows.append(
            [
                bench,
                "(macro: mean of subjects)",
                "",
                data["n"],
                data["correct"],
                data["macro_accuracy"],
            ]
        )
        rows.append(
            [
                bench,
                "(micro: all questions)",
                "",
                data["n"],
                data["correct"],
                data["micro_accuracy"],
            ]
        )
    o = result["overall"]
    if len(result["benchmarks"]) > 1:
        rows.append(
            ["ALL", "(macro: mean of subjects)", "", o["n"], o["correct"], o["macro_accuracy"]]
        )
        rows.append(
            ["ALL", "(micro: all questions)", "", o["n"], o["correct"], o["micro_accuracy"]]
        )
    return rows


def terminal_report(result: dict[str, Any]) -> str:
    head = (
        f"{result['model']}: template {result['template']}, {result['shots']}-shot, "
        f"split {result['split']}"
        + (f", limit {result['limit']} per subject" if result.get("limit") else "")
    )
    notes = "".join(f"\nnote: {n}" for n in result["notes"])
    return f"{head}\n{text_table(HEADERS, table_rows(result))}\n{letter_bias(result)}{notes}"


def letter_bias(result: dict[str, Any]) -> str:
    """Predicted vs. correct letter counts per benchmark: a strong bias toward one letter
    means the accuracy mostly measures how often that letter is right."""
    lines = []
    for bench, data in result["benchmarks"].items():
        pred = " ".join(f"{k}:{v}" for k, v in data.get("predicted_letters", {}).items())
        gold = " ".join(f"{k}:{v}" for k, v in data.get("answer_letters", {}).items())
        lines.append(f"{bench}: predicted {pred}; correct answers {gold}")
    return "\n".join(lines)


def plot_subjects(result: dict[str, Any]) -> str:
    """Horizontal bars: accuracy per subject, coloured by benchmark, chance line at 0.25."""
    plt = pyplot()
    labels, values, colors = [], [], []
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (bench, data) in enumerate(result["benchmarks"].items()):
        for subject, s in data["subjects"].items():
            labels.append(f"{bench}/{subject}")
            values.append(s["accuracy"] or 0.0)
            colors.append(palette[i % len(palette)])
    fig, ax = plt.subplots(figsize=(7.0, 0.35 * len(labels) + 1.2))
    ax.barh(range(len(labels)), values, color=colors)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(CHANCE, color="#888", linestyle="--", linewidth=1, label="chance (0.25)")
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy")
    ax.set_title(f"{result['shots']}-shot accuracy per subject")
    ax.legend(fontsize=7, loc="lower right")
    return png_img(fig, "accuracy per subject")


def html_report(result: dict[str, Any], path: str | Path) -> Path:
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in result["notes"])
    meta = (
        f"<p>Model <code>{esc(result['model'])}</code>, template "
        f"<code>{esc(result['template'])}</code> ({esc(result['template_origin'])}), "
        f"{result['shots']}-shot, split <code>{esc(result['split'])}</code>"
        + (f", first {result['limit']} questions per subject" if result.get("limit") else "")
        + ". Scored by the log-likelihood of each option letter as the assistant's "
        "answer.</p>"
    )
    body = (
        meta
        + notes
        + "<h2>Accuracy</h2>"
        + html_table(HEADERS, table_rows(result))
        + f'<p class="muted text">{esc(letter_bias(result))}</p>'
        + "<h2>Per subject</h2>"
        + plot_subjects(result)
    )
    return write_page(path, "Multiple-choice evaluation", body)


def write_reports(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    from sftforge.fsutil import atomic_write_text, output_dir

    out = output_dir(out_dir)
    results = out / "results.json"
    atomic_write_text(results, json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    return {"results": results, "report": html_report(result, out / "report.html")}
