"""Commands never destroy their input, never leave half-written outputs, refuse datasets
that do not match their manifest, and take overrides wherever they stand."""

from __future__ import annotations

import json
import os

import pytest

from sftforge.cli import build_parser, main, parse_args
from sftforge.data.manifest import describe_outputs

CONV = {"messages": [{"role": "user", "content": "What is 2+2?"},
                     {"role": "assistant", "content": "4."}]}  # fmt: skip


def _encode_args(tokenizer_path, data, out):
    tok = str(tokenizer_path("smollm2"))
    return ["encode", "--template", "chatml", "--tokenizer", tok, str(data), "--output", str(out)]


@pytest.fixture()
def data_file(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(CONV) + "\n" + json.dumps(CONV) + "\n")
    return path


@pytest.fixture()
def built(tmp_path):
    """A dataset folder as `data build` leaves it: splits and a manifest listing them."""
    ds = tmp_path / "ds"
    ds.mkdir()
    text_row = {"text": "Plain replay text about rivers and mountains."}
    (ds / "train.jsonl").write_text("".join(json.dumps(CONV) + "\n" for _ in range(4)))
    (ds / "validation.jsonl").write_text(json.dumps(CONV) + "\n" + json.dumps(text_row) + "\n")
    (ds / "manifest.json").write_text(json.dumps({"outputs": describe_outputs(ds)}))
    return ds


def _cut_short(path):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_encode_refuses_its_input_as_output(data_file, tokenizer_path, capsys, how):
    before = data_file.read_bytes()
    out = data_file.parent / "alias.jsonl"
    if how == "same":
        out = data_file
    elif how == "symlink":
        out.symlink_to(data_file)
    else:
        os.link(data_file, out)
    assert main(_encode_args(tokenizer_path, data_file, out)) == 2
    assert "would destroy the input" in capsys.readouterr().err
    assert data_file.read_bytes() == before


def test_preview_refuses_to_overwrite_its_input(data_file, tokenizer_path, capsys):
    tok = str(tokenizer_path("smollm2"))
    before = data_file.read_bytes()
    argv = ["preview", "--template", "chatml", "--tokenizer", tok, str(data_file),
            "--html", str(data_file)]  # fmt: skip
    assert main(argv) == 2
    assert "would destroy the input" in capsys.readouterr().err
    assert data_file.read_bytes() == before


def test_generate_refuses_its_input_as_output_before_loading(data_file, capsys):
    before = data_file.read_bytes()
    # The model does not exist: the refusal must come first, before any loading.
    argv = ["generate", "no-such-model", "--input", str(data_file), "--output", str(data_file)]
    assert main(argv) == 2
    assert "would destroy the input" in capsys.readouterr().err
    assert data_file.read_bytes() == before


def test_encode_output_onto_a_folder_is_a_clear_error(data_file, tokenizer_path, tmp_path, capsys):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert main(_encode_args(tokenizer_path, data_file, folder)) == 2
    assert "is a folder" in capsys.readouterr().err


def test_failed_encode_leaves_the_previous_output_and_no_temp(
    data_file, tokenizer_path, tmp_path, monkeypatch
):
    out = tmp_path / "enc.jsonl"
    out.write_text("previous\n")
    import sftforge.encode.encoder as encoder_mod

    real = encoder_mod.Encoded.to_dict
    calls = {"n": 0}

    def dies_midway(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(self)

    monkeypatch.setattr(encoder_mod.Encoded, "to_dict", dies_midway)
    assert main(_encode_args(tokenizer_path, data_file, out)) == 2
    assert out.read_text() == "previous\n"
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["data.jsonl", "enc.jsonl"]


def test_encode_refuses_a_split_that_does_not_match_its_manifest(
    built, tokenizer_path, tmp_path, capsys
):
    out = tmp_path / "enc.jsonl"
    _cut_short(built / "train.jsonl")
    assert main(_encode_args(tokenizer_path, built / "train.jsonl", out)) == 2
    err = capsys.readouterr().err
    assert "does not match its manifest.json" in err and "--no-verify" in err
    assert not out.exists()
    assert main([*_encode_args(tokenizer_path, built / "train.jsonl", out), "--no-verify"]) == 0
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["verification"]["skipped"] == "--no-verify"


def test_overrides_are_taken_after_options():
    parser = build_parser()
    args = parse_args(parser, ["train", "c.yaml", "--output", "o", "train.epochs=1", "a.b=2"])
    assert args.output == "o" and args.overrides == ["train.epochs=1", "a.b=2"]
    args = parse_args(parser, ["train", "c.yaml", "x=1", "--output", "o", "y=2"])
    assert args.overrides == ["x=1", "y=2"]
    args = parse_args(parser, ["data", "build", "r.yaml", "--num-proc", "1", "mix.total=5"])
    assert args.overrides == ["mix.total=5"]
    with pytest.raises(SystemExit):
        parse_args(parser, ["train", "c.yaml", "--output", "o", "--bogus"])
    with pytest.raises(SystemExit):  # a command without overrides takes no stray words
        parse_args(parser, ["templates", "show", "chatml", "extra=1"])


def test_encode_onto_a_full_disk_is_a_clear_error_and_keeps_the_old_output(
    tokenizer_path, tmp_path, small_disk, capsys
):
    data = tmp_path / "big.jsonl"
    long = {"messages": [{"role": "user", "content": "Tell me."},
                         {"role": "assistant", "content": "many words here " * 60}]}  # fmt: skip
    data.write_text("".join(json.dumps(long) + "\n" for _ in range(400)))
    out = small_disk / "enc.jsonl"
    out.write_text("previous\n")
    assert main(_encode_args(tokenizer_path, data, out)) == 2
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "Traceback" not in err
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in small_disk.iterdir()) == ["enc.jsonl"]


def test_encode_into_a_read_only_folder_is_a_clear_error(
    data_file, tokenizer_path, read_only_dir, capsys
):
    assert main(_encode_args(tokenizer_path, data_file, read_only_dir / "enc.jsonl")) == 2
    err = capsys.readouterr().err
    assert "read-only" in err and "Traceback" not in err
    assert sorted(p.name for p in read_only_dir.iterdir()) == ["old.txt"]
