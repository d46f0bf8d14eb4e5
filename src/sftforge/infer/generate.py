"""Generation through the training template.

The prompt is ``template.render(messages, add_generation_prompt=True)`` tokenized without
added special tokens: exactly the ids that precede an answer in training (the encoder's P1
property, tested for every built-in template and real tokenizer). Generation stops at EOS or
at any of the template's stop strings, which are cut from the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sftforge.templates.base import ChatTemplate
from sftforge.types import ConversationLike, as_conversation


@dataclass(frozen=True)
class Sampling:
    """Decoding controls. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    seed: int = 0

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        if self.temperature > 0:
            kwargs.update(
                do_sample=True,
                temperature=self.temperature,
                top_p=self.top_p,
                top_k=self.top_k or None,
            )
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    prompt_tokens: int
    new_tokens: int
    #: The generated ids up to (not including) EOS; health metrics count n-grams on them.
    token_ids: tuple[int, ...] = ()


def prompt_ids(template: ChatTemplate, tokenizer: Any, conversation: ConversationLike) -> list[int]:
    """The ids inference feeds: the rendered prompt, no special tokens added on top."""
    text = template.render(conversation, add_generation_prompt=True, tokenizer=tokenizer)
    return tokenizer(text, add_special_tokens=False).input_ids


def generate(
    model: Any,
    tokenizer: Any,
    template: ChatTemplate,
    conversations: Sequence[ConversationLike],
    sampling: Sampling | None = None,
    *,
    batch_size: int = 8,
    streamer: Any = None,
) -> list[Generation]:
    """Answer the last user turn of each conversation; batched with left padding."""
    import torch

    sampling = sampling or Sampling()
    stops = [s for s in template.stop_strings(tokenizer) if s]
    eos_ids = _eos_ids(model, tokenizer, stops)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    device = next(model.parameters()).device
    results: list[Generation] = []
    if sampling.temperature > 0:
        torch.manual_seed(sampling.seed)
    for start in range(0, len(conversations), batch_size):
        chunk = [as_conversation(c) for c in conversations[start : start + batch_size]]
        prompts = [prompt_ids(template, tokenizer, c) for c in chunk]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        with torch.no_grad():
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                eos_token_id=eos_ids,
                pad_token_id=pad_id,
                stop_strings=stops or None,
                tokenizer=tokenizer,
                streamer=streamer,
                **sampling.generate_kwargs(),
            )
        for row, p in enumerate(prompts):
            new = out[row, width:].tolist()
            results.append(_finish(tokenizer, new, len(p), eos_ids, stops, sampling))
    return results


def _eos_ids(model: Any, tokenizer: Any, stops: Sequence[str]) -> list[int]:
    """EOS plus every stop string that is a single token (``<|im_end|>``, ``</s>``)."""
    ids: list[int] = []
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, config_eos):
        for i in [value] if isinstance(value, int) else list(value or []):
            if i not in ids:
                ids.append(i)
    vocab = tokenizer.get_vocab()
    for stop in stops:
        if stop in vocab and vocab[stop] not in ids:
            ids.append(vocab[stop])
    return ids


def _finish(
    tokenizer: Any,
    new: list[int],
    prompt_len: int,
    eos_ids: list[int],
    stops: Sequence[str],
    sampling: Sampling,
) -> Generation:
    """Cut at the first EOS / stop string; say whether the model stopped by itself."""
    stopped = False
    for i, tok in enumerate(new):
        if tok in eos_ids:
            new, stopped = new[:i], True
            break
    text = tokenizer.decode(new, skip_special_tokens=False)
    for stop in stops:
        cut = text.find(stop)
        if cut != -1:
            text, stopped = text[:cut], True
    n = len(new)
    if not stopped and n < sampling.max_new_tokens:
        stopped = True  # generate ended early: a stop condition fired
    return Generation(text.strip(), "stop" if stopped else "length", prompt_len, n, tuple(new))
