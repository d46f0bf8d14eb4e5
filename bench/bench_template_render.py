"""Rendering cost of the bounded template sandbox against jinja's plain immutable sandbox.

Usage (from the repository root)::

    .venv/bin/python bench/bench_template_render.py [--data-dir ../shared/data] [--n 2000]
        [--repeats 5]

Renders SmolLM2's own chat template (the ``hf`` template of the embedded default) over
multi-turn conversations exactly as the encoder does (the whole text and every prefix,
with and without the generation prompt; one time budget per conversation) twice per
repeat, interleaved: once compiled in
:class:`sftforge.templates.sandbox.BoundedEnvironment` with the time budget and output
checks (what sftforge runs), once compiled in ``jinja2.sandbox.ImmutableSandboxedEnvironment``
and rendered with ``Template.render`` (what sftforge ran before the bounds; the reference).
Prints renders/s of each and the ratio bounded/plain (target: >= 0.9x; 1.0x = no cost).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data"
FILES = ("firefly/dummy_data.jsonl", "sharegpt/dummy_conversation.json")


def conversations(data_dir: Path, n: int) -> list[list[dict]]:
    from sftforge.data.formats import read_source

    convs = []
    for name in FILES:
        for conv in read_source(str(data_dir / name)):
            convs.append([{"role": m.role, "content": m.content} for m in conv.messages])
    return [convs[i % len(convs)] for i in range(n)]


def prefixes(convs: list[list[dict]]) -> list[list[tuple[list[dict], bool]]]:
    """Per conversation, every render the encoder makes: the whole text, then the prompt
    before and the text through each answer."""
    out = []
    for conv in convs:
        renders = [(conv, False)]
        for k, m in enumerate(conv):
            if m["role"] == "assistant":
                renders.append((conv[:k], True))
                renders.append((conv[: k + 1], False))
        out.append(renders)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--n", type=int, default=2000, help="conversations")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from sftforge.templates import get_template
    from sftforge.templates.jinja import _GenerationTag, _tojson
    from sftforge.tokenizer import load_tokenizer

    tok = load_tokenizer("smollm2")
    bounded = get_template("hf", tokenizer=tok)
    plain_env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    plain_env.filters["tojson"] = _tojson
    plain = plain_env.from_string(bounded.source)
    work = prefixes(conversations(args.data_dir, args.n))
    tokens = {"bos_token": tok.bos_token or "", "eos_token": tok.eos_token or ""}

    from sftforge.templates.base import SpecialTokens
    from sftforge.templates.sandbox import one_deadline

    special = SpecialTokens(tokens["bos_token"], tokens["eos_token"])

    def run_bounded() -> list[str]:
        out = []
        for renders in work:  # one time budget per conversation, as render_segments does
            with one_deadline("bench"):
                out += [bounded.render_messages(m, add_generation_prompt=g, tokens=special)
                        for m, g in renders]  # fmt: skip
        return out

    def run_plain() -> list[str]:
        return [plain.render(messages=m, add_generation_prompt=g, tools=None, **tokens)
                for renders in work for m, g in renders]  # fmt: skip

    assert run_bounded() == run_plain(), "the two environments must render the same text"
    times: dict[str, list[float]] = {"bounded": [], "plain": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", run_plain), ("bounded", run_bounded)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    spread = {k: (max(v) - min(v)) / statistics.median(v) for k, v in times.items()}
    count = sum(map(len, work))
    rate = {k: count / v for k, v in med.items()}
    ratio = rate["bounded"] / rate["plain"]
    print(f"{count:,} renders of SmolLM2's chat template, median of {args.repeats}")
    for k in ("plain", "bounded"):
        print(f"  {k:8s} {rate[k]:>10,.0f} renders/s  (spread {spread[k]:.0%})")
    verdict = "OK" if ratio >= 0.9 else "BELOW TARGET"
    print(f"bounded/plain = {ratio:.2f}x (target >= 0.9x) {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"renders": count, "rate": rate, "ratio": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
