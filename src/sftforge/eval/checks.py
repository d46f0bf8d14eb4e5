"""The checks users forget, each with a verdict.

* :func:`train_serve_consistency`: the prompt ids the exported ``chat_template`` produces
  through transformers' ``apply_chat_template`` equal the ids training put before each
  trained answer.
* :func:`template_ablation`: the same evaluation with the training template, with no
  template (raw text) and with another template, side by side.
* :func:`forgetting`: base against tuned on general text (replay perplexity), flagged when
  the tuned model regresses beyond a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sftforge.encode.encoder import Encoder
from sftforge.templates import get_template
from sftforge.templates.base import ChatTemplate, Template
from sftforge.types import Conversation

#: "No template": turns as plain text lines, the answer ended by EOS. What a model sees
#: when a user forgets the chat template.
NO_TEMPLATE = Template(
    name="none",
    summary="No chat template: user text, newline, answer (ablation baseline).",
    source="sftforge ablation",
    user_format="{content}\n",
    turn_separator="\n",
    end_of_turn="{eos}",
    after_turn="\n",
)


def train_serve_consistency(
    tokenizer: Any, template: ChatTemplate, conversations: Sequence[Conversation]
) -> dict[str, Any]:
    """Compare, turn by turn, ``apply_chat_template`` prompt ids with training's ids."""
    encoder = Encoder(template, tokenizer)
    checked, mismatches = 0, []
    source = tokenizer.chat_template or ""
    for conv, enc in zip(conversations, encoder.encode_batch(list(conversations)), strict=True):
        messages = served_messages(conv, keeps_input="'input'" in source)
        for span in enc.spans:
            if span.role != "assistant":
                continue
            served = _chat_template_ids(tokenizer, messages[: span.message])
            trained = enc.input_ids[: span.start]
            checked += 1
            if served != trained:
                at = _first_difference(served, trained)
                mismatches.append({
                    "sample": str(conv.location), "turn": span.message, "first_difference": at,
                    "served": tokenizer.decode(served[max(0, at - 8) : at + 8]),
                    "trained": tokenizer.decode(trained[max(0, at - 8) : at + 8]),
                })  # fmt: skip
    return {
        "kind": "consistency",
        "template": template.name,
        "turns_checked": checked,
        "mismatches": len(mismatches),
        "examples": mismatches[:5],
        "verdict": "pass" if checked and not mismatches else "fail",
    }


def served_messages(conv: Conversation, *, keeps_input: bool) -> list[dict[str, Any]]:
    """The messages a client sends: an Alpaca-style ``input`` is part of the content unless
    the chat template has an input slot (templates exported by sftforge do)."""
    out = []
    for m in conv.messages:
        d = m.to_dict()
        d.pop("train", None)
        if m.input and not keeps_input:
            d["content"] = m.content_with_input
            d.pop("input", None)
        out.append(d)
    return out


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def _chat_template_ids(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    # The folder's chat_template is foreign code and transformers renders it unbounded:
    # render it in sftforge's bounded sandbox first, which raises a TemplateError on a
    # template that would hang or exhaust the machine.
    from sftforge.templates.jinja import JinjaChatTemplate

    JinjaChatTemplate.from_tokenizer(tokenizer).render(
        messages, add_generation_prompt=True, tokenizer=tokenizer
    )
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def ablation_templates(trained: ChatTemplate, other: str | None, tokenizer: Any) -> list[Any]:
    """The training template, no template, and another template (default: a template of a
    different family than the training one)."""
    if other is None:
        other = "alpaca" if trained.name not in ("alpaca",) else "vicuna"
    return [trained, NO_TEMPLATE, get_template(other, tokenizer=tokenizer)]


def template_ablation(
    loaded: Any,
    data: str | Path,
    prompts: Sequence[Sequence[dict[str, Any]]],
    *,
    other: str | None = None,
    split: str = "validation",
    max_new_tokens: int = 128,
    limit: int | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Perplexity and generation health under each template, and a verdict."""
    from sftforge.eval.health import generation_health
    from sftforge.eval.ppl import perplexity
    from sftforge.infer.generate import Sampling, generate

    rows = []
    sampling = Sampling(max_new_tokens=max_new_tokens)
    for template in ablation_templates(loaded.template, other, loaded.tokenizer):
        ppl = perplexity(loaded, data, split=split, template=template, limit=limit,
                         verify=verify)  # fmt: skip
        gens = generate(loaded.model, loaded.tokenizer, template, list(prompts), sampling)
        last_user = [p[-1]["content"] for p in prompts]
        health = generation_health(last_user, gens, loaded.tokenizer,
                                   max_new_tokens=max_new_tokens)  # fmt: skip
        rows.append({
            "template": template.name,
            "role": "training" if template is loaded.template else "ablation",
            "ppl": ppl["overall"]["ppl"],
            "stop_rate": health["stop_rate"],
            "mean_length": health["length"]["mean"],
            "repeated_3gram_ratio": health["repetition"]["repeated_3gram_ratio_mean"],
            "language_mismatch_rate": health["language"]["mismatch_rate"],
            "samples": [g.text for g in gens[:3]],
            "ppl_result": {k: ppl[k] for k in ("samples_in", "dropped", "max_length")},
        })  # fmt: skip
    trained, *others = rows
    best_other = min(r["ppl"] for r in others)
    verdict = (
        "training template best" if trained["ppl"] < best_other
        else "no drop without the training template (unexpected)"
    )  # fmt: skip
    return {
        "kind": "ablation",
        "model": str(loaded.source),
        "rows": rows,
        "ppl_ratio_no_template": rows[1]["ppl"] / trained["ppl"],
        "verdict": verdict,
    }


def forgetting(
    base: Any,
    tuned: Any,
    replay_data: str | Path,
    *,
    threshold: float = 0.1,
    split: str = "validation",
    limit: int | None = None,
    mcq: tuple[dict[str, Any], dict[str, Any]] | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Replay-text perplexity (all tokens trained) of base and tuned models; regression is
    flagged when the tuned perplexity exceeds the base's by more than ``threshold``
    (relative), or, given multiple-choice results ``(base, tuned)``, when accuracy drops
    by more than ``threshold`` (absolute)."""
    from sftforge.eval.ppl import perplexity

    kwargs = {"split": split, "limit": limit, "policy": "all_tokens", "progress": True,
              "verify": verify}  # fmt: skip
    base_result = perplexity(base, replay_data, **kwargs)
    tuned_result = perplexity(tuned, replay_data, **kwargs)
    base_ppl, tuned_ppl = base_result["overall"]["ppl"], tuned_result["overall"]["ppl"]
    flags = []
    change = tuned_ppl / base_ppl - 1.0
    if change > threshold:
        flags.append(f"replay perplexity up {change:.1%} (threshold {threshold:.0%})")
    result: dict[str, Any] = {
        "kind": "forgetting",
        "base": str(base.source),
        "tuned": str(tuned.source),
        "replay_ppl": {"base": base_ppl, "tuned": tuned_ppl, "relative_change": change},
        "threshold": threshold,
        "replay": {
            who: {k: r[k] for k in ("samples_in", "dropped", "max_length", "verification")}
            for who, r in (("base", base_result), ("tuned", tuned_result))
        },
    }
    if mcq is not None:
        base_acc, tuned_acc = (m["overall"]["micro_accuracy"] for m in mcq)
        result["mcq_accuracy"] = {"base": base_acc, "tuned": tuned_acc,
                                  "change": tuned_acc - base_acc}  # fmt: skip
        if base_acc - tuned_acc > threshold:
            flags.append(f"multiple-choice accuracy down {base_acc - tuned_acc:.1%}")
    result["flags"] = flags
    result["verdict"] = "regression" if flags else "no regression"
    return result
