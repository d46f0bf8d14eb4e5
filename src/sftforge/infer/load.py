"""Load a model for inference together with the template it was trained with.

Accepts a model directory written by ``sftforge train`` (LoRA adapter or full weights), a
merged directory, any Hugging Face model directory, a ``.gguf`` file or ``smollm2``. The
template comes from the directory's ``template.json``; for models trained elsewhere it is
named explicitly (``--template chatml``) or taken from the tokenizer (``hf``).

Consistency with training is checked, loudly: the tokenizer's fingerprint and the
template's hash are compared with those recorded in ``run.json``, and a ``--template``
that differs from the training template raises a :class:`TemplateMismatchWarning` (the most
common reason a tuned model answers short, garbled or in the wrong language).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftforge.models.adapters import adapter_base, is_adapter_dir, load_with_adapter
from sftforge.models.load import load_causal_lm, resolve_model_dir
from sftforge.templates import get_template, load_template
from sftforge.templates.base import ChatTemplate
from sftforge.tokenizer import load_tokenizer, tokenizer_fingerprint
from sftforge.train import artifacts


class TrainServeMismatchWarning(UserWarning):
    """Inference would not see what training saw (template or tokenizer differs)."""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    template: ChatTemplate
    source: str
    run_info: dict[str, Any] = field(default_factory=dict)
    template_origin: str = ""  # "template.json" | "explicit" | "tokenizer (hf)"
    warnings: list[str] = field(default_factory=list)


def load_for_inference(
    source: str | Path,
    *,
    template: str | None = None,
    dtype: Any = None,
    device: str | None = None,
) -> LoadedModel:
    """Model, tokenizer and template for ``source`` (see the module docstring)."""
    import torch

    path = Path(source)
    info = artifacts.read_run_info(path) if path.is_dir() else {}
    if path.is_dir() and is_adapter_dir(path):
        base = adapter_base(path)  # the portable reference, resolved on this machine
        model = load_with_adapter(path, base, dtype=dtype)
        tokenizer = load_tokenizer(path)
    else:
        model_dir = resolve_model_dir(source)
        model = load_causal_lm(model_dir, dtype=dtype)
        tokenizer = load_tokenizer(model_dir)
        path = model_dir
    model.eval()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)

    saved = path / artifacts.TEMPLATE_FILE
    notes: list[str] = []
    if template is not None:
        chosen = named_template(template, tokenizer)
        origin = "explicit"
        if saved.is_file():
            trained = load_template(saved)
            if artifacts.template_sha256(trained) != artifacts.template_sha256(chosen):
                notes.append(
                    f"--template {template!r} differs from the template this model was trained "
                    f"with ({trained.name!r}, {saved}): expect short, garbled or wrong-language "
                    "answers. Drop --template to use the training template."
                )
    elif saved.is_file():
        chosen, origin = load_template(saved), "template.json"
    else:
        chosen, origin = get_template("hf", tokenizer=tokenizer), "tokenizer (hf)"

    notes += consistency_problems(info, tokenizer, chosen if origin == "template.json" else None)
    for note in notes:
        warnings.warn(note, TrainServeMismatchWarning, stacklevel=2)
    return LoadedModel(model, tokenizer, chosen, str(source), info, origin, notes)


def consistency_problems(
    info: dict[str, Any], tokenizer: Any, template: ChatTemplate | None
) -> list[str]:
    """Differences between what ``run.json`` recorded at training and what is loaded."""
    problems = []
    recorded_tok = info.get("tokenizer_sha256")
    if recorded_tok and recorded_tok != tokenizer_fingerprint(tokenizer):
        problems.append(
            "the tokenizer differs from the one recorded at training (run.json "
            "tokenizer_sha256): token ids at inference will not match training"
        )
    recorded_tpl = (info.get("template") or {}).get("sha256")
    if (
        template is not None
        and recorded_tpl
        and recorded_tpl != artifacts.template_sha256(template)
    ):
        problems.append(
            "template.json differs from the template recorded at training (run.json "
            "template.sha256)"
        )
    return problems


def named_template(name: str, tokenizer: Any) -> ChatTemplate:
    """A built-in template, ``hf`` (the tokenizer's own) or a template.json path."""
    if name.endswith(".json"):
        return load_template(name)
    return get_template(name, tokenizer=tokenizer)
