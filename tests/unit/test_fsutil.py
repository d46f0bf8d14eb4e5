"""Atomic writes, input-as-output refusal, output locks and manifest verification."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from sftforge.data.manifest import (
    DatasetIntegrityError,
    describe_outputs,
    verify_dataset,
)
from sftforge.fsutil import (
    TMP_PREFIX,
    OutputIsInputError,
    OutputPathError,
    atomic_open,
    atomic_write_text,
    default_dir_mode,
    default_file_mode,
    publish_dir,
    refuse_input_as_output,
)
from sftforge.lockfile import OutputLockedError, hold_lock, lock_path_for


def test_atomic_open_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("new partial")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_atomic_write_uses_normal_modes(tmp_path):
    target = atomic_write_text(tmp_path / "a.txt", "x")
    assert target.stat().st_mode & 0o777 == default_file_mode()


def test_atomic_write_to_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(OutputPathError, match="is a folder"):
        atomic_write_text(tmp_path, "x")


def test_refuse_same_file_through_symlink_and_hard_link(tmp_path):
    src = tmp_path / "data.jsonl"
    src.write_text("{}\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(src)
    hard = tmp_path / "hard.jsonl"
    os.link(src, hard)
    for out in (src, link, hard, tmp_path / "sub" / ".." / "data.jsonl"):
        with pytest.raises(OutputIsInputError):
            refuse_input_as_output([src], [out])
    with pytest.raises(OutputIsInputError, match="holds the input"):
        refuse_input_as_output([src], [tmp_path])
    refuse_input_as_output([src], [tmp_path / "other.jsonl"])


def test_publish_dir_replace_swaps_whole_folders(tmp_path):
    entry = tmp_path / "ds"
    publish_dir(entry, lambda d: (d / "a").write_text("1"), replace=True)
    publish_dir(entry, lambda d: (d / "b").write_text("2"), replace=True)
    assert sorted(p.name for p in entry.iterdir()) == ["b"]
    assert entry.stat().st_mode & 0o777 == default_dir_mode()  # not the 0700 of mkdtemp
    assert (entry / "b").stat().st_mode & 0o777 == default_file_mode()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]

    def fail(d):
        (d / "c").write_text("3")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        publish_dir(entry, fail, replace=True)
    assert sorted(p.name for p in entry.iterdir()) == ["b"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_lock_names_the_holder_and_is_released(tmp_path):
    out = tmp_path / "ds"
    with hold_lock(out, "building"):
        child = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(f"""
                from sftforge.lockfile import hold_lock
                with hold_lock({str(out)!r}):
                    pass
            """)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert child.returncode != 0
        assert f"PID {os.getpid()}" in child.stderr and "building" in child.stderr
    assert not lock_path_for(out).exists()
    with hold_lock(out):
        pass


def test_stale_lock_of_a_killed_process_is_cleared(tmp_path, capsys):
    out = tmp_path / "ds"
    # A process takes the lock and is SIGKILLed while holding it.
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os, signal
            from sftforge.lockfile import hold_lock
            with hold_lock({str(out)!r}):
                print("held", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    proc.wait()
    assert lock_path_for(out).exists()
    assert json.loads(lock_path_for(out).read_text())["pid"] == proc.pid
    with hold_lock(out):
        pass
    assert "stale lock" in capsys.readouterr().err


def test_second_lock_in_process_is_refused(tmp_path):
    out = tmp_path / "ds"
    with hold_lock(out), pytest.raises(OutputLockedError), hold_lock(out):
        pass


def _dataset(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "train.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    (ds / "validation.jsonl").write_text('{"a": 3}\n')
    outputs = describe_outputs(ds)
    (ds / "manifest.json").write_text(json.dumps({"outputs": outputs}))
    return ds


def test_verify_accepts_an_intact_dataset(tmp_path):
    ds = _dataset(tmp_path)
    result = verify_dataset(ds)
    assert result.verified and set(result.files) == {"train.jsonl", "validation.jsonl"}
    assert verify_dataset(ds / "train.jsonl").files == ["train.jsonl"]


def test_verify_refuses_a_truncated_split(tmp_path):
    ds = _dataset(tmp_path)
    (ds / "train.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(DatasetIntegrityError, match=r"train.jsonl: .*1 rows.*2 rows"):
        verify_dataset(ds)
    with pytest.raises(DatasetIntegrityError):
        verify_dataset(ds / "train.jsonl")
    assert verify_dataset(ds, verify=False).skipped_reason == "--no-verify"


def test_verify_refuses_same_size_edit_and_missing_manifest(tmp_path):
    ds = _dataset(tmp_path)
    (ds / "train.jsonl").write_text('{"a": 1}\n{"a": 9}\n')
    with pytest.raises(DatasetIntegrityError, match="SHA-256"):
        verify_dataset(ds)
    (ds / "manifest.json").unlink()
    with pytest.raises(DatasetIntegrityError, match=r"no manifest\.json"):
        verify_dataset(ds)


def test_standalone_file_is_not_verified(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text("{}\n")
    assert not verify_dataset(f).verified
