"""The single-step data verbs never destroy their input and never leave half a file:
an output that is the input (directly, through a symlink or a hard link) is refused with
one clear line before anything is opened; a failure while writing leaves the previous
output as it was and no temporary file."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from sftforge.cli import main
from sftforge.fsutil import TMP_PREFIX

ALPACA = Path(__file__).resolve().parents[1] / "assets" / "data" / "alpaca" / "alpaca_en_demo.json"


@pytest.fixture
def data(tmp_path) -> Path:
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows + rows[:1]) + "\n", encoding="utf-8")
    return path


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(TMP_PREFIX)]


def refused(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sftforge: error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    return err


@pytest.mark.parametrize("verb", ["convert", "dedup"])
@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_output_that_is_the_input_is_refused(tmp_path, data, capsys, verb, how):
    before = data.read_bytes()
    out = data
    if how == "symlink":
        out = tmp_path / "link.jsonl"
        out.symlink_to(data)
    elif how == "hard link":
        out = tmp_path / "hard.jsonl"
        os.link(data, out)
    err = refused(capsys, ["data", verb, str(data), "--output", str(out)])
    assert "would destroy the input" in err
    assert data.read_bytes() == before
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("verb", ["convert", "dedup"])
def test_rejects_file_that_is_the_input_is_refused(tmp_path, data, capsys, verb):
    before = data.read_bytes()
    argv = ["data", verb, str(data), "--output", str(tmp_path / "o.jsonl"), "--rejects"]
    refused(capsys, [*argv, str(data)])
    assert data.read_bytes() == before
    assert not (tmp_path / "o.jsonl").exists()


def test_report_over_its_input_is_refused(tmp_path, data, capsys):
    before = data.read_bytes()
    refused(capsys, ["data", "report", str(data), "--no-tokenizer", "--output", str(data)])
    assert data.read_bytes() == before


@pytest.mark.parametrize("verb", ["convert", "dedup"])
def test_full_disk_leaves_the_previous_output_and_no_temp_file(
    tmp_path, data, capsys, monkeypatch, verb
):
    out = tmp_path / "out.jsonl"
    rejects = tmp_path / "out.rejects.jsonl"
    argv = ["data", verb, str(data), "--output", str(out), "--rejects", str(rejects)]
    assert main(argv) == 0
    before = {p: p.read_bytes() for p in (out, rejects)}
    capsys.readouterr()

    import sftforge.types as types

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(types.Conversation, "to_json", full)
    err = refused(capsys, argv)
    assert "no space left on the device" in err
    assert {p: p.read_bytes() for p in (out, rejects)} == before
    assert no_temp_files(tmp_path)


def test_failure_while_reading_keeps_the_previous_parquet(tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "out.parquet"
    assert main(["data", "convert", str(data), "--output", str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()

    import sftforge.data.commands as commands

    def broken(args, sink):
        yield from []
        raise ValueError("the input went away half way")

    monkeypatch.setattr(commands, "_read", broken)
    assert main(["data", "convert", str(data), "--output", str(out)]) == 2
    assert out.read_bytes() == before
    assert no_temp_files(tmp_path)
