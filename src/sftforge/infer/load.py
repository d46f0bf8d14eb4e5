"""Load a model for inference together with the template it was trained with.

Accepts a model directory written by ``sftforge train`` (LoRA adapter or full weights), a
merged directory, any Hugging Face model directory, a ``.gguf`` file or ``smollm2``. The
template comes from the directory's ``template.json``; for models trained elsewhere it is
named explicitly (``--template chatml``) or taken from the tokenizer (``hf``).

Integrity is enforced, not advised: a ``template.json`` whose hash differs from the one
``run.json`` recorded (an edited template: "Always answer in French"), a tokenizer whose
fingerprint differs, or base weights that differ from those an adapter was trained on
stop with :class:`TrainServeMismatchError`, saying what differs; ``allow_mismatch=True``
(``--allow-mismatch``) loads anyway, warns, and the outputs record it. A ``--template``
that differs from the training template is the user's explicit choice and raises a loud
:class:`TrainServeMismatchWarning` (the most common reason a tuned model answers short,
garbled or in the wrong language).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftforge.errors import SftForgeError
from sftforge.models.adapters import (
    BaseModelMismatchWarning,
    adapter_base,
    is_adapter_dir,
    load_with_adapter,
)
from sftforge.models.load import load_causal_lm, resolve_model_dir
from sftforge.templates import get_template, load_template
from sftforge.templates.base import ChatTemplate
from sftforge.tokenizer import load_tokenizer, tokenizer_fingerprint
from sftforge.train import artifacts


class TrainServeMismatchWarning(UserWarning):
    """Inference would not see what training saw (template or tokenizer differs)."""


class TrainServeMismatchError(SftForgeError, ValueError):
    """A model folder's template, tokenizer or base weights differ from what training
    recorded in run.json."""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    template: ChatTemplate
    source: str
    run_info: dict[str, Any] = field(default_factory=dict)
    template_origin: str = ""  # "template.json" | "explicit" | "tokenizer (hf)"
    warnings: list[str] = field(default_factory=list)
    #: Integrity problems loaded anyway under ``allow_mismatch`` (outputs record them).
    allowed_mismatches: list[str] = field(default_factory=list)

    def integrity(self) -> dict[str, Any]:
        """What results files record about this load."""
        return {
            "template_origin": self.template_origin,
            "allowed_mismatches": self.allowed_mismatches,
        }


def load_for_inference(
    source: str | Path,
    *,
    template: str | None = None,
    dtype: Any = None,
    device: str | None = None,
    allow_mismatch: bool = False,
) -> LoadedModel:
    """Model, tokenizer and template for ``source`` (see the module docstring)."""
    import torch

    path = Path(source)
    adapter = path.is_dir() and is_adapter_dir(path)
    folder = path if adapter else resolve_model_dir(source)
    info = artifacts.read_run_info(folder) if folder.is_dir() else {}
    # Everything cheap first, so a folder that will be refused is refused before the model
    # loads (seconds to minutes): tokenizer, template, their recorded hashes, base weights.
    tokenizer = load_tokenizer(folder)
    base_notes: list[str] = []
    chosen, origin, notes = _choose_template(folder, template, tokenizer)
    saved_template = chosen if origin == "template.json" else None
    allowed = enforce_integrity(folder, info, tokenizer, saved_template, allow_mismatch)
    if adapter:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BaseModelMismatchWarning)
            # the portable reference, resolved on this machine; raises on other weights
            base = adapter_base(folder, allow_mismatch=allow_mismatch)
        base_notes = [str(w.message) for w in caught if w.category is BaseModelMismatchWarning]
        for note in base_notes:  # as the category callers filter on
            warnings.warn(note, BaseModelMismatchWarning, stacklevel=2)
        model = load_with_adapter(folder, base, dtype=dtype)
    else:
        model = load_causal_lm(folder, dtype=dtype)
    model.eval()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    notes += allowed
    for note in notes:
        warnings.warn(note, TrainServeMismatchWarning, stacklevel=2)
    allowed += base_notes
    return LoadedModel(model, tokenizer, chosen, str(source), info, origin, notes + base_notes,
                       allowed)  # fmt: skip


def _choose_template(
    folder: Path, template: str | None, tokenizer: Any
) -> tuple[ChatTemplate, str, list[str]]:
    """The template to serve with, where it came from, and loud notes about the choice."""
    saved = folder / artifacts.TEMPLATE_FILE
    notes: list[str] = []
    if template is not None:
        chosen = named_template(template, tokenizer)
        if saved.is_file():
            trained = load_template(saved)
            if artifacts.template_sha256(trained) != artifacts.template_sha256(chosen):
                notes.append(
                    f"--template {template!r} differs from the template this model was trained "
                    f"with ({trained.name!r}, {saved}): expect short, garbled or wrong-language "
                    "answers. Drop --template to use the training template."
                )
        return chosen, "explicit", notes
    if saved.is_file():
        return load_template(saved), "template.json", notes
    return get_template("hf", tokenizer=tokenizer), "tokenizer (hf)", notes


def enforce_integrity(
    folder: Path, info: dict[str, Any], tokenizer: Any, template: ChatTemplate | None,
    allow_mismatch: bool,
) -> list[str]:  # fmt: skip
    """Raise :class:`TrainServeMismatchError` on an integrity problem, or return the
    problems when ``allow_mismatch`` lets them through."""
    problems = consistency_problems(info, tokenizer, template)
    if problems and not allow_mismatch:
        raise TrainServeMismatchError(
            f"{folder}: " + "; ".join(problems) + ". Loading it would serve the model "
            "differently from how it was trained. Restore the folder's files, or pass "
            "--allow-mismatch to load it anyway (outputs then record the mismatch)."
        )
    return problems


def consistency_problems(
    info: dict[str, Any], tokenizer: Any, template: ChatTemplate | None
) -> list[str]:
    """Differences between what ``run.json`` recorded at training and what is loaded."""
    problems = []
    recorded_tok = info.get("tokenizer_sha256")
    if tokenizer is not None and recorded_tok and recorded_tok != tokenizer_fingerprint(tokenizer):
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
            "template.sha256): it was edited after training"
        )
    return problems


def named_template(name: str, tokenizer: Any) -> ChatTemplate:
    """A built-in template, ``hf`` (the tokenizer's own) or a template.json path."""
    if name.endswith(".json"):
        return load_template(name)
    return get_template(name, tokenizer=tokenizer)
