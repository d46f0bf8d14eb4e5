"""A standing corpus of hostile data files: every one ends as a clear error naming the file
(exit 2, one line, no traceback) or as counted rejects with a reason (exit 0), never as a
traceback, for ``data inspect``, ``data convert`` and ``data build``; and one bad record
never decides a whole file (the good records around it are kept).

Most files are generated here. Each run is bounded in time; the whole file runs in well
under a minute.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sftforge.cli import main
from sftforge.data.block import RejectSink
from sftforge.data.formats import read_source

GOOD = {"instruction": "Name a prime number.", "input": "", "output": "Seven is prime."}
DEEP = "[" * 100_000 + "]" * 100_000
LIMIT_S = 15  # one verb on one hostile file: about a second (the first build imports more)


def good(i: int) -> dict:
    return {**GOOD, "instruction": f"Name prime number {i}."}


def jsonl_bytes(n: int = 50) -> bytes:
    return ("\n".join(json.dumps(good(i)) for i in range(n)) + "\n").encode()


def array_text(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def goods(n: int, start: int = 0) -> list[str]:
    return [json.dumps(good(i)) for i in range(start, start + n)]


# -- the hostile files: name -> (builder, expected outcome) ----------------------------------
def gz_truncated(d: Path) -> Path:
    blob = gzip.compress(jsonl_bytes(500))
    (p := d / "truncated.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    return p


def gz_bad_magic(d: Path) -> Path:
    (p := d / "notgzip.jsonl.gz").write_bytes(jsonl_bytes(5))
    return p


def gz_bad_crc(d: Path) -> Path:
    blob = bytearray(gzip.compress(jsonl_bytes(50)))
    blob[-8] ^= 0xFF  # the CRC32 of the member
    (p := d / "badcrc.jsonl.gz").write_bytes(bytes(blob))
    return p


def gz_trailing_garbage(d: Path) -> Path:
    (p := d / "garbage.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes(50)) + b"not gzip!!")
    return p


def gz_empty(d: Path) -> Path:
    (p := d / "empty.json.gz").write_bytes(b"")
    return p


def deep_array(d: Path) -> Path:
    (p := d / "deep.json").write_text(array_text([*goods(5), DEEP, *goods(5, 5)]))
    return p


def deep_jsonl(d: Path) -> Path:
    (p := d / "deep.jsonl").write_text("\n".join([*goods(5), DEEP, *goods(5, 5)]) + "\n")
    return p


def deep_json_stream(d: Path) -> Path:  # a .json of concatenated pretty-printed values
    values = [json.dumps(good(i), indent=2) for i in range(5)]
    (p := d / "stream.json").write_text("\n".join([*values[:2], DEEP, *values[2:]]) + "\n")
    return p


def huge_int_array(d: Path) -> Path:
    bad = '{"instruction": "Count.", "input": "", "output": ' + "9" * 5000 + "}"
    (p := d / "bigint.json").write_text(array_text([*goods(5), bad, *goods(5, 5)]))
    return p


def huge_int_jsonl(d: Path) -> Path:
    bad = '{"instruction": "Count.", "input": "", "output": ' + "9" * 5000 + "}"
    (p := d / "bigint.jsonl").write_text("\n".join([*goods(5), bad, *goods(5, 5)]) + "\n")
    return p


def invalid_utf8_jsonl(d: Path) -> Path:
    bad = b'{"instruction": "caf\xe9 \xff", "input": "", "output": "ok"}'
    (p := d / "latin1.jsonl").write_bytes(jsonl_bytes(5) + bad + b"\n" + jsonl_bytes(5))
    return p


def invalid_utf8_array(d: Path) -> Path:
    bad = b'{"instruction": "caf\xe9 \xff", "input": "", "output": "ok"}'
    body = (
        b"["
        + b", ".join([*(g.encode() for g in goods(5)), bad, *(g.encode() for g in goods(5, 5))])
        + b"]"
    )
    (p := d / "latin1.json").write_bytes(body)
    return p


def truncated_array(d: Path) -> Path:
    (p := d / "cut.json").write_text(array_text(goods(10))[:-40])
    return p


def stray_first_element(d: Path) -> Path:
    stray = json.dumps({"comment": "exported by tool X", "version": 3})
    (p := d / "stray.json").write_text(array_text([stray, *goods(20)]))
    return p


def non_dict_elements(d: Path) -> Path:
    (p := d / "mixed.json").write_text(array_text([*goods(10), '"just a string"', "42", "null"]))
    return p


def parquet_wrong_types(d: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"instruction": [1, 2, 3], "input": [None] * 3, "output": [0.5, 1.5, 2.5]})
    pq.write_table(table, p := d / "types.parquet")
    return p


def parquet_corrupt(d: Path) -> Path:
    (p := d / "corrupt.parquet").write_bytes(b"PAR1" + b"\x00" * 200 + b"PAR1")
    return p


def parquet_not_parquet(d: Path) -> Path:
    (p := d / "text.parquet").write_bytes(jsonl_bytes(3))
    return p


def dir_with_metadata(d: Path) -> Path:
    folder = d / "dataset"
    folder.mkdir()
    (folder / "dataset_info.json").write_text(
        json.dumps({"description": "x", "features": {}}, indent=2)
    )
    (folder / "config.json").write_text(
        json.dumps({"model_type": "llama", "hidden_size": 8}, indent=2)
    )
    (folder / "train.jsonl").write_bytes(jsonl_bytes(20))
    return folder


ERROR, REJECT = "error", "reject"
CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "gz truncated": (gz_truncated, ERROR),
    "gz bad magic": (gz_bad_magic, ERROR),
    "gz bad crc": (gz_bad_crc, ERROR),
    "gz garbage after member": (gz_trailing_garbage, ERROR),
    "gz empty": (gz_empty, ERROR),
    "deep array element": (deep_array, REJECT),
    "deep jsonl line": (deep_jsonl, REJECT),
    "deep value in a json stream": (deep_json_stream, REJECT),
    "5000-digit int in array": (huge_int_array, REJECT),
    "5000-digit int in jsonl": (huge_int_jsonl, REJECT),
    "invalid utf-8 jsonl": (invalid_utf8_jsonl, REJECT),
    "invalid utf-8 array": (invalid_utf8_array, REJECT),
    "truncated array": (truncated_array, REJECT),
    "stray first element": (stray_first_element, REJECT),
    "non-object elements": (non_dict_elements, REJECT),
    "parquet wrong types": (parquet_wrong_types, REJECT),
    "parquet corrupt": (parquet_corrupt, ERROR),
    "parquet that is text": (parquet_not_parquet, ERROR),
    "dir with dataset_info.json and config.json": (dir_with_metadata, REJECT),
}  # fmt: skip
#: Cases whose every record is bad (each one a counted reject).
ALL_BAD = {"parquet wrong types"}


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    started = time.monotonic()
    code = main(argv)
    took = time.monotonic() - started
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    assert took < LIMIT_S, f"{argv}: {took:.1f}s"
    return code, out, err


def assert_clear_error(code: int, err: str, path: Path) -> None:
    assert code == 2, err
    assert err.startswith("sftforge: error:") and len(err.strip().splitlines()) == 1, err
    assert path.name in err, err


@pytest.mark.parametrize("case", CASES)
def test_inspect(tmp_path, capsys, case):
    make, expected = CASES[case]
    path = make(tmp_path)
    code, out, err = run(capsys, ["data", "inspect", str(path), "-n", "1"])
    if expected == ERROR:
        assert_clear_error(code, err, path)
        return
    assert code == 0, err
    assert re.search(r"rejected \(\w+\): [1-9]", out), out
    if case not in ALL_BAD:
        assert re.search(r"valid conversations: [1-9]", out), out  # the rest was read


@pytest.mark.parametrize("case", CASES)
def test_convert(tmp_path, capsys, case):
    make, expected = CASES[case]
    path = make(tmp_path)
    out_file = tmp_path / "out.jsonl"
    rejects = tmp_path / "rejects.jsonl"
    code, out, err = run(
        capsys,
        ["data", "convert", str(path), "--output", str(out_file), "--rejects", str(rejects)],
    )
    if expected == ERROR:
        assert_clear_error(code, err, path)
        assert not out_file.exists()
        return
    assert code == 0, err
    n_rejected = int(re.search(r"rejected (\d+)", out).group(1))
    assert n_rejected > 0
    lines = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == n_rejected and all(r["reason"] and r["detail"] for r in lines)
    if case not in ALL_BAD:
        assert int(re.search(r"wrote (\d+)", out).group(1)) >= 5  # good records kept


@pytest.mark.parametrize("case", CASES)
def test_build(tmp_path, capsys, case):
    make, expected = CASES[case]
    path = make(tmp_path)
    ok = tmp_path / "ok.jsonl"
    ok.write_bytes(jsonl_bytes(30))
    recipe = {
        "name": "hostile",
        "tokenizer": None,
        "num_proc": 1,
        "output": str(tmp_path / "built"),
        "sources": [{"name": "ok", "path": str(ok)}, {"name": "hostile", "path": str(path)}],
        "mix": {"allow_shortfall": True},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    code, out, err = run(capsys, ["data", "build", str(tmp_path / "r.yaml")])
    if expected == ERROR:
        assert_clear_error(code, err, path)
        assert not (tmp_path / "built").exists()
        return
    assert code == 0, err
    assert int(re.search(r"rejected (\d+)", out).group(1)) > 0
    read = [json.loads(line) for line in (tmp_path / "built" / "rejects.jsonl").open()]
    assert any(r["stage"] == "read" and r["where"].startswith(str(path)) for r in read)


# -- where a reject is -----------------------------------------------------------------------------
def test_rejects_in_a_one_line_array_carry_their_index(tmp_path):
    items = goods(30)
    items[17] = json.dumps({"instruction": "", "input": "", "output": "no question"})
    items[23] = "[" * 50_000 + "]" * 50_000
    path = tmp_path / "one_line.json"
    path.write_text(array_text(items))  # the whole array on line 1
    with RejectSink(tmp_path / "rejects.jsonl") as sink:
        kept = list(read_source(path, sink=sink))
    assert len(kept) == 28
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").open()]
    assert [(r["index"], r["where"]) for r in rejects] == [(17, f"{path}:1"), (23, f"{path}:1")]
    assert rejects[0]["reason"] == "empty_turn" and rejects[1]["reason"] == "invalid_json"


def test_format_is_detected_from_most_records_not_the_first(tmp_path):
    from sftforge.data.formats import detect_format

    path = stray_first_element(tmp_path)
    assert detect_format(str(path)) == "alpaca"
    sink = RejectSink()
    assert len(list(read_source(path, sink=sink))) == 20
    assert sum(sink.stages["read"].rejected.values()) == 1


def test_metadata_files_in_a_directory_are_counted_rejects(tmp_path):
    folder = dir_with_metadata(tmp_path)
    sink = RejectSink()
    assert len(list(read_source(folder, sink=sink))) == 20
    assert sink.stages["read"].rejected == {"unknown_format": 2}
    wheres = sorted(e["where"] for e in sink.examples[("read", "unknown_format")])
    assert wheres == [f"{folder}/config.json:1", f"{folder}/dataset_info.json:1"]


# -- the unified-format reader (train / eval inputs) ---------------------------------------------
@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("deep.json", ("[" + DEEP + "]").encode()),
        ("deep.jsonl", (json.dumps({"messages": []}) + "\n" + DEEP + "\n").encode()),
        ("bigint.json", b'[{"messages": [], "n": ' + b"9" * 5000 + b"}]"),
        ("bigint.jsonl", b'{"messages": [], "n": ' + b"9" * 5000 + b"}\n"),
        ("latin1.jsonl", b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n'),
        ("latin1.json", b'[{"messages": [{"role": "user", "content": "caf\xe9"}]}]'),
    ],
)
def test_unified_reader_names_the_file(tmp_path, name, body):
    from sftforge.conversation_io import read_conversations
    from sftforge.errors import ConversationError

    path = tmp_path / name
    path.write_bytes(body)
    with pytest.raises(ConversationError) as err:
        list(read_conversations(path))
    assert name in str(err.value)
