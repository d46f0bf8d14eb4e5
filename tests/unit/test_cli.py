"""The command line, run in-process through ``sftforge.cli.main``."""

from __future__ import annotations

import json

import pytest

from sftforge.cli import main
from sftforge.templates import get_template

CONV = {
    "messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6."},
    ]
}


@pytest.fixture()
def conv_file(tmp_path):
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(CONV))
    return path


@pytest.fixture()
def data_file(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [CONV, {"messages": [{"role": "bot", "content": "x"}]}, CONV]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_templates_list(capsys):
    assert main(["templates", "list", "--json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert {"alpaca", "llama2", "chatml", "hf"} <= set(names)
    assert main(["templates", "list"]) == 0
    assert "vicuna" in capsys.readouterr().out


def test_templates_show(capsys):
    assert main(["templates", "show", "llama2"]) == 0
    out = capsys.readouterr().out
    assert '"system_merge_format"' in out and "stop strings" in out


@pytest.mark.parametrize("name", ["llama2", "chatml", "mistral"])
def test_templates_render_prints_the_exact_text(name, conv_file, capsys):
    assert main(["templates", "render", name, "--input", str(conv_file)]) == 0
    assert capsys.readouterr().out == get_template(name).render(CONV)
    prompt = {"messages": CONV["messages"][:4]}
    conv_file.write_text(json.dumps(prompt))
    assert (
        main(["templates", "render", name, "--input", str(conv_file), "--generation-prompt"]) == 0
    )
    assert capsys.readouterr().out == get_template(name).render(prompt, add_generation_prompt=True)


def test_templates_export(capsys):
    assert main(["templates", "export", "chatml", "--format", "hf"]) == 0
    assert "{% generation %}" in capsys.readouterr().out
    assert main(["templates", "export", "llama2", "--format", "ollama"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("FROM ./model.gguf") and 'PARAMETER stop "</s>"' in out


def test_unknown_template_is_a_clear_error(conv_file, capsys):
    assert main(["templates", "render", "llama-2", "--input", str(conv_file)]) == 2
    err = capsys.readouterr().err
    assert "unknown template 'llama-2'" in err and "llama2" in err


def test_encode_writes_samples_and_a_report(data_file, tmp_path, tokenizer_path, capsys):
    out = tmp_path / "enc.jsonl"
    tok = str(tokenizer_path("smollm2"))
    args = [
        "encode",
        "--template",
        "chatml",
        "--tokenizer",
        tok,
        str(data_file),
        "--output",
        str(out),
    ]
    assert main(args) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2
    assert all(len(r["input_ids"]) == len(r["labels"]) for r in rows)
    assert any(label == -100 for label in rows[0]["labels"])
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["samples_in"] == 3 and report["dropped"] == {"invalid_conversation": 1}
    assert report["reconciles"] is True
    assert f"{data_file}:2" in report["examples"]["invalid_conversation"][0]
    assert "1 dropped" in capsys.readouterr().out


def test_encode_strict_mode_stops_with_file_and_line(data_file, tmp_path, tokenizer_path, capsys):
    tok = str(tokenizer_path("smollm2"))
    args = ["encode", "--template", "chatml", "--tokenizer", tok, str(data_file),
            "--output", str(tmp_path / "o.jsonl"), "--errors", "raise"]  # fmt: skip
    assert main(args) == 2
    assert f"{data_file}:2" in capsys.readouterr().err


def test_preview_writes_html_and_prints_fraction(data_file, tmp_path, tokenizer_path, capsys):
    html = tmp_path / "p.html"
    tok = str(tokenizer_path("smollm2"))
    args = [
        "preview",
        "--template",
        "chatml",
        "--tokenizer",
        tok,
        str(data_file),
        "--html",
        str(html),
    ]
    assert main(args) == 0
    assert html.read_text(encoding="utf-8").count('class="tok trained') > 0
    assert "trained fraction" in capsys.readouterr().out
