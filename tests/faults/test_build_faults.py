"""`sftforge data build` under faults: killed in every phase, run twice at once, out of
disk, unable to write; and the checks that stop a build from losing data silently.

Every fault leaves the previous dataset exactly as it was (same manifest, same file
hashes, ``verify_dataset`` passes) and no working files beside it once the next build
of the same output has run. Kills run the build in a subprocess whose driver replaces one
function of the phase with ``os.kill(os.getpid(), SIGKILL)``; production code has no
fault hooks.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from sftforge.cli import main
from sftforge.data.build_output import BuildShortfallError
from sftforge.data.manifest import verify_dataset
from sftforge.data.pipeline import build_dataset
from sftforge.data.recipe import load_recipe
from sftforge.fsutil import TMP_PREFIX, OutputPathError
from sftforge.lockfile import OutputLockedError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DATA = ASSETS / "data"
SRC = Path(__file__).resolve().parents[2] / "src"


def write_recipe(folder: Path, **extra) -> Path:
    recipe = {
        "name": "faults",
        "seed": 1,
        "tokenizer": None,
        "sources": [
            {"name": "alpaca_en", "path": str(DATA / "alpaca/alpaca_en_demo.json")},
            {"name": "identity", "path": str(DATA / "alpaca/identity.json")},
            {"name": "c4", "path": str(DATA / "pretrain/c4_demo.jsonl"), "replay": True},
        ],
        "filters": [{"length": {"min_chars": 2}}],
        "dedup": {"exact": True, "near": None},
        "split": {"val_ratio": 0.2},
        **extra,
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def build(folder: Path, out: Path, **extra):
    recipe = load_recipe(write_recipe(folder, **extra))
    return build_dataset(recipe, output=out, progress=False, log=lambda _: None)


def snapshot(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def leftovers(out: Path) -> list[str]:
    return sorted(
        p.name
        for p in out.parent.iterdir()
        if p.name.startswith(TMP_PREFIX) or p.name == f".{out.name}.lock"
    )


@pytest.fixture
def old(tmp_path):
    """A complete dataset, the one every fault must leave intact."""
    out = tmp_path / "ds"
    build(tmp_path, out)
    return out, snapshot(out)


def assert_intact(out: Path, before: dict[str, str]) -> None:
    assert snapshot(out) == before
    assert verify_dataset(out).verified


DRIVER = """
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, {src!r})
import sftforge.data.spool, sftforge.data.writer, sftforge.data.build_output
from sftforge.data.pipeline import build_dataset
from sftforge.data.recipe import load_recipe

def die(*args, **kwargs):
    {before}
    os.kill(os.getpid(), signal.SIGKILL)

target = {target!r}
module, _, name = target.rpartition(".")
owner = eval(module)
setattr(owner, name, die)
build_dataset(load_recipe({recipe!r}), output={out!r}, progress=False, log=lambda _: None)
print("BUILD FINISHED")
"""

PHASES = {
    "reading": ("sftforge.data.spool.Spool.add_line", "pass"),
    "writing splits": ("sftforge.data.writer.SplitWriter.write_raw", "pass"),
    "writing parquet": ("sftforge.data.writer.SplitWriter._write_table", "pass"),
    # half a manifest in the staging folder, then the kill
    "writing the manifest": (
        "sftforge.data.build_output.write_manifest",
        "(args[0] / 'manifest.json').write_text('{\"outputs\": ')",
    ),
}


def run_driver(tmp_path: Path, out: Path, target: str, before: str) -> subprocess.CompletedProcess:
    script = tmp_path / "driver.py"
    script.write_text(
        DRIVER.format(
            src=str(SRC),
            before=before,
            target=target,
            recipe=str(write_recipe(tmp_path)),
            out=str(out),
        ),
        encoding="utf-8",
    )
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("phase", list(PHASES))
def test_build_killed_in_any_phase_leaves_the_previous_dataset(tmp_path, old, phase):
    out, before = old
    target, before_kill = PHASES[phase]
    # a different recipe, so a published result would differ from the old dataset
    write_recipe(tmp_path, split={"val_ratio": 0.5})
    proc = run_driver(tmp_path, out, target, before_kill)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "BUILD FINISHED" not in proc.stdout
    assert_intact(out, before)
    # the next build of the same output clears what the killed one left
    again = build(tmp_path, out)
    assert again.out_dir == out and verify_dataset(out).verified
    assert leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "rejects.jsonl", "report.html", "train.jsonl", "train.parquet",
        "validation.jsonl", "validation.parquet",
    ]  # fmt: skip


def test_second_build_into_the_same_output_stops_naming_the_first(tmp_path, old, capsys):
    out, before = old
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from pathlib import Path
                sys.path.insert(0, {str(SRC)!r})
                import sftforge.data.spool as spool
                from sftforge.data.pipeline import build_dataset
                from sftforge.data.recipe import load_recipe
                def stall(*a, **k):
                    Path({str(started)!r}).touch()
                    time.sleep(60)
                spool.Spool.add_line = stall
                build_dataset(load_recipe({str(write_recipe(tmp_path))!r}),
                              output={str(out)!r}, progress=False, log=lambda _: None)
            """),
        ]
    )
    try:
        deadline = time.time() + 60
        while not started.exists():
            assert proc.poll() is None and time.time() < deadline, "first build did not start"
            time.sleep(0.05)
        with pytest.raises(OutputLockedError, match=f"PID {proc.pid}"):
            build(tmp_path, out)
        # the same through the CLI: one clear line, no traceback
        assert main(["data", "build", str(write_recipe(tmp_path)), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert "sftforge: error:" in err and f"PID {proc.pid}" in err
        assert "Traceback" not in err
        assert_intact(out, before)
    finally:
        proc.kill()
        proc.wait()
    assert_intact(out, before)


def test_full_disk_leaves_the_previous_dataset(tmp_path, old, monkeypatch):
    out, before = old
    from sftforge.data.writer import SplitWriter

    def full(self, line):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(SplitWriter, "write_raw", full)
    with pytest.raises(OutputPathError, match="no space left on the device"):
        build(tmp_path, out, split={"val_ratio": 0.5})
    assert_intact(out, before)
    assert leftovers(out) == []


def test_unwritable_output_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x", encoding="utf-8")
    out = blocker / "ds"
    with pytest.raises(OutputPathError, match="is a file"):
        build(tmp_path, out)
    assert main(["data", "build", str(write_recipe(tmp_path)), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sftforge: error:") and "Traceback" not in err
    assert blocker.read_text(encoding="utf-8") == "x"


def test_a_really_full_disk_leaves_the_previous_dataset(tmp_path, small_disk, capsys):
    """On a real (tiny tmpfs) file system: the previous dataset fits, a second copy does
    not, so the new build fails writing; the old one stays, nothing is left beside it."""
    out = small_disk / "ds"
    try:
        build(tmp_path, out)
    except OutputPathError:
        pytest.skip("the test dataset does not fit the tiny file system even once")
    before = snapshot(out)
    (tmp_path / "big").mkdir()
    code = main(["data", "build", str(write_recipe(tmp_path / "big")), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "no space left on the device" in err and "Traceback" not in err
    assert_intact(out, before)
    assert leftovers(out) == []


def test_a_read_only_file_system_leaves_the_previous_dataset(tmp_path, old, read_only_dir, capsys):
    """The output lives on a file system remounted read-only (works as root, unlike chmod)."""
    out = read_only_dir / "elsewhere"
    code = main(["data", "build", str(write_recipe(tmp_path)), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "read-only" in err and "Traceback" not in err
    assert sorted(p.name for p in read_only_dir.iterdir()) == ["old.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_read_only_output_folder_leaves_the_previous_dataset(tmp_path, old):
    out, before = old
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(OutputPathError):
            build(tmp_path / "elsewhere", out)
    finally:
        os.chmod(tmp_path, 0o755)
    assert_intact(out, before)


def test_output_folder_holding_an_input_or_foreign_files_is_refused(tmp_path):
    from sftforge.fsutil import OutputIsInputError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(OutputPathError, match=r"notes\.txt"):
        build(tmp_path, mine)
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me"
    with pytest.raises(OutputIsInputError):
        build(tmp_path, DATA / "alpaca")


def test_manifest_is_last_and_describes_every_split(tmp_path, old):
    out, _ = old
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for name, entry in manifest["outputs"].items():
        assert entry["bytes"] == (out / name).stat().st_size
        assert entry["rows"] >= 0 and len(entry["sha256"]) == 64
    assert not (out / ".work").exists()
    newest = max((p for p in out.iterdir()), key=lambda p: p.stat().st_mtime_ns)
    assert newest.name == "manifest.json"


# -- nothing vanishes without a count --------------------------------------------------------
def test_unmet_replay_ratio_fails_naming_the_numbers_unless_allowed(tmp_path, capsys):
    mix = {"replay_ratio": 0.5}
    with pytest.raises(BuildShortfallError, match=r"replay_ratio: 0\.5 requested, 0\.\d+ achieved"):
        build(tmp_path, tmp_path / "ds", mix=mix)
    assert not (tmp_path / "ds").exists() and leftovers(tmp_path / "ds") == []
    recipe = write_recipe(tmp_path, mix={**mix, "allow_shortfall": True})
    assert main(["data", "build", str(recipe), "--output", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "warning: replay_ratio: 0.5 requested" in out
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text(encoding="utf-8"))
    assert any("replay_ratio" in w for w in manifest["warnings"])


def test_source_with_no_records_fails_the_build(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    sources = [
        {"name": "alpaca_en", "path": str(DATA / "alpaca/alpaca_en_demo.json")},
        {"name": "empty", "path": str(empty)},
    ]
    with pytest.raises(BuildShortfallError, match=r"source 'empty' \(.*empty.jsonl\)"):
        build(tmp_path, tmp_path / "ds", sources=sources)
    result = build(tmp_path, tmp_path / "ds", sources=sources, mix={"allow_shortfall": True})
    assert any("'empty'" in w for w in result.manifest["warnings"])


def test_not_sampled_records_are_counted_but_not_written_as_rejects(tmp_path):
    sources = [
        {"name": "alpaca_en", "path": str(DATA / "alpaca/alpaca_en_demo.json"), "weight": 1},
        {"name": "alpaca_zh", "path": str(DATA / "alpaca/alpaca_zh_demo.json"), "weight": 1},
    ]
    result = build(tmp_path, tmp_path / "ds", sources=sources, mix={"total": 4})
    m = result.manifest
    assert m["stages"]["mix"]["rejected"]["not_sampled"] == m["records_not_sampled"] > 0
    lines = (result.out_dir / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
    assert all(json.loads(x)["reason"] != "not_sampled" for x in lines)
    assert len(lines) == m["records_rejected"]
    total_out = result.counts["train"] + result.counts["validation"]
    assert m["records_read"] == total_out + m["records_rejected"] + m["records_not_sampled"]


def test_long_text_documents_become_windows_not_rejects(tmp_path):
    paragraphs = [
        " ".join(f"Article {a} paragraph {p} sentence {s} about rivers." for s in range(12))
        for a in range(3)
        for p in range(8)
    ]
    # one article per blank-line block, paragraphs on their own lines, CR line breaks
    wiki = tmp_path / "wiki.txt"
    wiki.write_bytes(
        "\r\r".join("\r".join(paragraphs[a * 8 : a * 8 + 8]) for a in range(3)).encode()
    )
    sources = [
        {"name": "alpaca_en", "path": str(DATA / "alpaca/alpaca_en_demo.json")},
        {"name": "wiki", "path": str(wiki), "replay": True},
    ]
    filters = [{"length": {"min_chars": 2, "max_chars": 2000}}]
    result = build(tmp_path, tmp_path / "ds", sources=sources, filters=filters)
    m = result.manifest
    assert m["stages"]["length"]["rejected"].get("too_long", 0) == 0
    assert m["windows"]["documents"] >= 3 and m["windows"]["windows_added"] > 0
    rows = [
        json.loads(x)
        for name in ("train.jsonl", "validation.jsonl")
        for x in (result.out_dir / name).read_text(encoding="utf-8").splitlines()
    ]
    wiki_rows = [r for r in rows if r["source"] == "wiki"]
    assert len(wiki_rows) == 3 + m["windows"]["windows_added"]
    for r in wiki_rows:
        text = r["messages"][0]["content"]
        assert len(text) <= 2000 and text.startswith("Article")  # cut at paragraph starts
    kept = "".join(r["messages"][0]["content"] for r in wiki_rows)
    assert sum(len(p) for p in paragraphs) == len(kept.replace("\n", ""))


def test_decontamination_reads_mt_bench_and_reports_counts(tmp_path, capsys):
    question = json.loads((ASSETS / "mt_bench/question.jsonl").read_text().splitlines()[2])
    planted = tmp_path / "planted.jsonl"
    rows = [
        {"instruction": question["turns"][0], "input": "", "output": "def run(s): ..."},
        {"instruction": "Name a prime number larger than ten.", "input": "", "output": "11."},
    ]
    planted.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    sources = [{"name": "planted", "path": str(planted)}]
    evals = [str(ASSETS / "mt_bench/question.jsonl")]
    recipe = write_recipe(tmp_path, sources=sources, dedup={"decontaminate": {"eval": evals}})
    assert main(["data", "build", str(recipe), "--output", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "decontamination: 8 questions from" in out and "question.jsonl" in out
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text(encoding="utf-8"))
    assert list(manifest["decontamination"]["eval_files"].values()) == [8]
    assert manifest["stages"]["decontaminate"]["rejected"] == {"eval_contamination": 1}
    # an eval file in a layout nothing is read from is refused, not skipped
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"query_text": "What is two plus two?"}) + "\n", encoding="utf-8")
    bad = write_recipe(tmp_path, sources=sources, dedup={"decontaminate": {"eval": [str(odd)]}})
    assert main(["data", "build", str(bad), "--output", str(tmp_path / "ds2")]) == 2
    err = capsys.readouterr().err
    assert "no eval questions found" in err and "odd.jsonl" in err
