"""Files shipped inside the package (sample data for the quickstart)."""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent

#: Mixed English and Chinese, single- and multi-turn conversations sliced from public
#: datasets (see tests/assets/README.md for provenance and licences).
SAMPLE_CONVERSATIONS = RESOURCES / "sample_conversations.jsonl"
