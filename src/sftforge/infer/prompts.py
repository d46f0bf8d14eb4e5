"""Prompt files for generation and evaluation: one JSON object per line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sftforge.errors import SftForgeError


def read_prompts(path: Path, *, verify: bool = True) -> list[dict[str, Any]]:
    """JSONL: ``{"messages": [...]}``, ``{"prompt": "..."}`` or a bare message list. A split
    of a built dataset is checked against its manifest first (``verify=False`` skips it)."""
    from sftforge.data.manifest import verify_dataset

    verify_dataset(path, verify=verify)
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SftForgeError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
            if isinstance(record, list):
                record = {"messages": record}
            if "prompt" in record and "messages" not in record:
                record = {**record, "messages": [{"role": "user", "content": record["prompt"]}]}
            if not isinstance(record.get("messages"), list) or not record["messages"]:
                raise SftForgeError(
                    f'{path}:{lineno}: expected {{"messages": [...]}} or {{"prompt": "..."}}'
                )
            messages = record["messages"]
            if messages[-1].get("role") == "assistant":  # a reference answer: not a prompt
                record = {**record, "reference": messages[-1].get("content")}
                messages = messages[:-1]
            rows.append({**record, "messages": messages, "line": lineno})
    return rows
