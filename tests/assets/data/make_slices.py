"""Make the reader fixtures in this folder (one-off, reproducible).

Usage (from the repository root)::

    .venv/bin/python tests/assets/data/make_slices.py [DATA_DIR]

``DATA_DIR`` defaults to ``../shared/data`` relative to the repository root. For every
instruction / chat / pre-training file there (not the eval CSVs) it writes the first
``SLICES[path]`` records to the same relative path here, keeping the file's layout: JSON
arrays are re-serialised exactly as upstream wrote them (``json.dumps(indent=2 or 4,
ensure_ascii=False)``, checked against the full file), JSON Lines are copied line for line.
It copies ``licenses/`` unchanged and writes ``bad_records.jsonl``: records with planted
faults, one per line, that the readers must reject (see ``BAD_LINES``).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"

#: Records kept per file (enough to hold both KTO labels, Alpaca ``history`` and tool calls).
SLICES = {
    "alpaca/alpaca_en_demo.json": 5,
    "alpaca/alpaca_zh_demo.json": 5,
    "alpaca/identity.json": 5,
    "alpaca/oaast_sft_zh.json": 12,
    "sharegpt/dummy_conversation.json": 5,
    "sharegpt/glaive_toolcall_en_demo.json": 5,
    "openai/kto_en_demo.json": 6,
    "openai/v1_sft_demo.jsonl": 5,
    "openai/generative-ai-for-beginners/training-data.jsonl": 3,
    "openai/generative-ai-for-beginners/validation-data.jsonl": 2,
    "openai/minicpm/AdvertiseGenChatML/train.json": 3,
    "openai/minicpm/AdvertiseGenChatML/dev.json": 2,
    "firefly/dummy_data.jsonl": 3,
    "pretrain/c4_demo.jsonl": 3,
    "pretrain/dummy_pretrain.jsonl": 3,
}


def _msg(role: str, content: object) -> dict[str, object]:
    return {"role": role, "content": content}


def _line(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


#: (planted fault or None for a good record, line bytes). Line numbers are 1-based.
BAD_LINES: list[tuple[str | None, bytes]] = [
    (None, _line({"id": "good-1", "messages": [_msg("user", "Hi"), _msg("assistant", "Hello!")]})),
    ("invalid_json", b'{"messages": [{"role": "user", "content": "unclosed"}'),
    ("wrong_type", _line({"messages": [_msg("user", "What is 6 x 7?"), _msg("assistant", 42)]})),
    ("missing_field", _line({"id": "no-messages", "prompt": "Where are the messages?"})),
    ("empty_turn", _line({"messages": [_msg("user", "Say something"), _msg("assistant", "   ")]})),
    (
        None,
        _line(
            {
                "messages": [
                    _msg("system", "Be brief."),
                    _msg("user", "2+2?"),
                    _msg("assistant", "4"),
                    _msg("user", "3+3?"),
                    _msg("assistant", "6"),
                ]
            }
        ),
    ),
    (
        "bad_role_order",
        _line({"messages": [_msg("user", "a"), _msg("user", "b"), _msg("assistant", "c")]}),
    ),
    (
        "invalid_utf8",
        b'{"messages": [{"role": "user", "content": "bad \xff\xfe bytes"}, '
        b'{"role": "assistant", "content": "ok"}]}',
    ),
    (
        "nul_byte",
        _line({"messages": [_msg("user", "nul \u0000 escaped"), _msg("assistant", "ok")]}),
    ),
    (
        "nul_byte",
        b'{"messages": [{"role": "user", "content": "raw \x00 nul"}, '
        b'{"role": "assistant", "content": "ok"}]}',
    ),
    (
        "field_too_long",
        _line({"messages": [_msg("user", "Write a lot"), _msg("assistant", "x" * 300_000)]}),
    ),
    ("unknown_role", _line({"messages": [_msg("user", "Hi"), _msg("bot", "Hello")]})),
    ("no_assistant", _line({"messages": [_msg("system", "S"), _msg("user", "Anyone there?")]})),
    (None, b"   "),  # a blank line: skipped, not a record
    (
        None,
        _line(
            {
                "messages": [
                    _msg("user", "Weather in Paris?"),
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
                    _msg("assistant", "18 °C in Paris."),
                ],
                "tools": [{"type": "function", "function": {"name": "weather", "parameters": {}}}],
            }
        ),
    ),
    ("wrong_type", _line("just a string, not an object")),
    (
        "bad_role_order",
        _line({"messages": [_msg("user", "Q"), _msg("assistant", "A"), _msg("user", "Q2")]}),
    ),
]


def write_bad_records(path: Path) -> None:
    path.write_bytes(b"".join(line + b"\n" for _, line in BAD_LINES))


def slice_file(src: Path, dst: Path, n: int) -> int:
    text = src.read_text(encoding="utf-8")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if text.lstrip().startswith("["):
        records = json.loads(text)
        indent = next(
            i
            for i in (2, 4)
            if json.dumps(records, indent=i, ensure_ascii=False) == text.rstrip("\n")
        )
        out = json.dumps(records[:n], indent=indent, ensure_ascii=False)
        dst.write_text(out + ("\n" if text.endswith("\n") else ""), encoding="utf-8")
        return min(n, len(records))
    lines = [line for line in text.splitlines(keepends=True) if line.strip()][:n]
    dst.write_text("".join(lines), encoding="utf-8")
    return len(lines)


def main(argv: list[str]) -> int:
    data_dir = Path(argv[0]) if argv else DEFAULT_DATA_DIR
    if not (data_dir / "README.md").is_file():
        raise SystemExit(f"{data_dir}: not the shared data dir (no README.md)")
    for rel, n in SLICES.items():
        kept = slice_file(data_dir / rel, HERE / rel, n)
        print(f"{rel}: {kept} records")
    shutil.copytree(data_dir / "licenses", HERE / "licenses", dirs_exist_ok=True)
    write_bad_records(HERE / "bad_records.jsonl")
    print(f"bad_records.jsonl: {len(BAD_LINES)} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
