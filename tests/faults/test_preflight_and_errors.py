"""Preflight before the expensive part, and every failure a clear line (a bug: a short
message and a log with the traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import sftforge.models.load as model_load
from sftforge.cli import main

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TRAIN = ASSETS / "conversations_en.jsonl"


@pytest.fixture()
def no_model_loading(monkeypatch):
    """Loading or converting a model fails the test: preflight must not need one."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the preflight finished")

    monkeypatch.setattr(model_load, "load_causal_lm", refuse)
    monkeypatch.setattr(model_load, "_converted_gguf", refuse)


def _config(tmp_path, **changes):
    data = {
        "output_dir": str(tmp_path / "run"),
        "model": {"path": "smollm2", "template": "chatml"},
        "data": {"path": str(TRAIN)},
        "train": {"method": "lora"},
    }
    for key, value in changes.items():
        section, field = key.split(".")
        data[section][field] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"data.path": "/no/such/data"}, "data.path: /no/such/data: no such file"),
        ({"model.template": "chatmlx"}, "model.template: unknown template 'chatmlx'"),
        ({"train.method": "qlora"}, "train.method: train.method=qlora needs a CUDA GPU"),
        ({"model.path": "/no/such/model"}, "model.path: /no/such/model: no such file"),
    ],
)
def test_train_check_finds_what_failed_only_after_model_loading(
    tmp_path, capsys, no_model_loading, change, says
):
    for argv in (["train", str(_config(tmp_path, **change)), "--check"],
                 ["train", str(_config(tmp_path, **change))]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err


def test_train_check_lists_every_problem_at_once(tmp_path, capsys, no_model_loading):
    path = _config(tmp_path, **{"data.path": "/no/data", "model.template": "nope"})
    assert main(["train", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "data.path" in err and "model.template" in err


def test_train_check_passes_a_good_config_without_loading(tmp_path, capsys, no_model_loading):
    assert main(["train", str(_config(tmp_path)), "--check"]) == 0
    out = capsys.readouterr().out
    assert "preflight passed" in out and "not a built dataset" in out


def test_train_check_refuses_a_cut_dataset(tmp_path, capsys, no_model_loading):
    from sftforge.data.manifest import describe_outputs

    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "train.jsonl").write_text(TRAIN.read_text())
    (ds / "manifest.json").write_text(json.dumps({"outputs": describe_outputs(ds)}))
    (ds / "train.jsonl").write_text("".join(TRAIN.read_text().splitlines(True)[:3]))
    assert main(["train", str(_config(tmp_path, **{"data.path": str(ds)})), "--check"]) == 2
    assert "does not match its manifest.json" in capsys.readouterr().err


def test_eval_fails_on_missing_data_before_loading_a_model(tmp_path, capsys, no_model_loading):
    argv = ["eval", "ppl", "smollm2", "--data", str(tmp_path / "none"), "--output",
            str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    assert "no such file" in capsys.readouterr().err
    argv = ["eval", "mcq", "smollm2", "--data", str(tmp_path / "none"), "--output",
            str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    assert "not a directory" in capsys.readouterr().err


def test_a_bug_prints_one_line_and_the_log_path(monkeypatch, tmp_path, capsys):
    import sftforge.cli as cli

    def broken(args):
        raise KeyError("internal")

    monkeypatch.setenv("SFTFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cli, "cmd_templates_list", broken)
    assert main(["templates", "list"]) == 1
    err = capsys.readouterr().err
    assert "unexpected error: KeyError" in err and "Traceback" not in err
    [log] = (tmp_path / "cache" / "logs").glob("crash-*.log")
    assert "Traceback" in log.read_text() and "KeyError" in log.read_text()
    assert main(["templates", "list", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_os_errors_name_the_file(tmp_path, capsys):
    conv = tmp_path / "c.json"
    assert main(["templates", "render", "chatml", "--input", str(conv)]) == 2
    err = capsys.readouterr().err
    assert str(conv) in err and "Traceback" not in err


def test_prompt_files_from_a_cut_dataset_are_refused_before_loading(
    tmp_path, capsys, no_model_loading
):
    """generate, eval health and eval sheet read prompts; a built dataset's split given as
    prompts is verified like every other read of a built dataset."""
    from sftforge.data.manifest import describe_outputs

    ds = tmp_path / "ds"
    ds.mkdir()
    lines = TRAIN.read_text().splitlines(True)
    (ds / "validation.jsonl").write_text("".join(lines[:6]))
    (ds / "manifest.json").write_text(json.dumps({"outputs": describe_outputs(ds)}))
    (ds / "validation.jsonl").write_text("".join(lines[:3]))
    split = str(ds / "validation.jsonl")
    for argv in (["generate", "smollm2", "--input", split, "--output", str(tmp_path / "g.jsonl")],
                 ["eval", "health", "smollm2", "--prompts", split, "--output", str(tmp_path / "h")],
                 ["eval", "sheet", "--models", "smollm2", "smollm2", "--prompts", split, "-n", "2",
                  "--output", str(tmp_path / "s")]):  # fmt: skip
        assert main(argv) == 2, argv
        assert "does not match its manifest.json" in capsys.readouterr().err
