"""The `sftforge data ...` single-step verbs, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from sftforge.cli import main

ALPACA = Path(__file__).resolve().parents[1] / "assets" / "data" / "alpaca" / "alpaca_en_demo.json"


def test_inspect_detects_the_format(capsys):
    assert main(["data", "inspect", str(ALPACA), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "alpaca" in out and "records: 5" in out


def test_convert_to_jsonl_and_parquet_only(tmp_path):
    assert main(["data", "convert", str(ALPACA), "--output", str(tmp_path / "a.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and rows[0]["messages"][-1]["role"] == "assistant"
    assert (
        main(["data", "convert", str(ALPACA), "--output", str(tmp_path / "p" / "a.parquet")]) == 0
    )
    assert pq.read_table(tmp_path / "p" / "a.parquet").num_rows == 5
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["a.parquet"]


def test_dedup_writes_rejects_with_duplicate_of(tmp_path):
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))
    data = tmp_path / "d.json"
    data.write_text(json.dumps(rows + rows[:2]), encoding="utf-8")
    out = tmp_path / "dedup.jsonl"
    assert main(["data", "dedup", str(data), "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 5
    rejects = [json.loads(x) for x in out.with_suffix(".rejects.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejects] == ["exact_duplicate", "exact_duplicate"]
    assert all(r["duplicate_of"] for r in rejects)


def test_report_of_a_file(tmp_path):
    out = tmp_path / "r.html"
    assert main(["data", "report", str(ALPACA), "--no-tokenizer", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8").count("data:image/png;base64,") >= 4
