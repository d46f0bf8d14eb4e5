"""The model directory contract: what a finished run leaves behind.

::

    adapter_model.safetensors + adapter_config.json   (LoRA / QLoRA)   or
    model.safetensors + config.json                   (full fine-tuning, merged models)
    tokenizer.json, tokenizer_config.json             chat_template = the training template
    template.json      the full template definition (chat, generate and eval read it)
    train_config.yaml  the resolved config
    run.json           base model, dataset manifest hash, tokenizer and template hashes,
                       run context, before/after validation metrics, library versions
    audit.json         the supervision audit
    metrics.jsonl      every logged metric;  loss.png  the loss curve

Setting the tokenizer's ``chat_template`` to the exported template means transformers,
vLLM and Ollama users get the training template by default.
"""

from __future__ import annotations

import hashlib
import json
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from sftforge.templates import save_template
from sftforge.templates.base import ChatTemplate
from sftforge.tokenizer import tokenizer_fingerprint

RUN_FILE = "run.json"
TEMPLATE_FILE = "template.json"
CONFIG_FILE = "train_config.yaml"
METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"
AUDIT_FILE = "audit.json"

#: Files every finished run directory holds (weights differ by method, see above).
CONTRACT_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    TEMPLATE_FILE,
    CONFIG_FILE,
    RUN_FILE,
    AUDIT_FILE,
    METRICS_FILE,
    LOSS_PLOT,
)


def set_chat_template(tokenizer: Any, template: ChatTemplate) -> None:
    """Make ``apply_chat_template`` render the training template."""
    from sftforge.templates.jinja import JinjaChatTemplate, to_hf_chat_template

    if isinstance(template, JinjaChatTemplate):
        tokenizer.chat_template = template.source
    else:
        tokenizer.chat_template = to_hf_chat_template(template)


def template_sha256(template: ChatTemplate) -> str:
    payload = json.dumps(template.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def save_tokenizer_and_template(out: Path, tokenizer: Any, template: ChatTemplate) -> None:
    set_chat_template(tokenizer, template)
    tokenizer.save_pretrained(str(out))
    save_template(template, out / TEMPLATE_FILE)


def set_generation_stops(model: Any, tokenizer: Any, template: ChatTemplate) -> None:
    """Add single-token stop strings (``<|im_end|>``, ``</s>``) to the generation config's
    EOS ids, so plain ``model.generate`` stops where the template's turns end."""
    config = getattr(model, "generation_config", None)
    if config is None:
        return
    eos = config.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    for stop in template.stop_strings(tokenizer):
        tok_ids = tokenizer.convert_tokens_to_ids(stop) if stop in tokenizer.get_vocab() else None
        if isinstance(tok_ids, int) and tok_ids not in ids:
            ids.append(tok_ids)
    if ids:
        config.eos_token_id = ids[0] if len(ids) == 1 else ids


def write_run_info(out: Path, info: dict[str, Any]) -> Path:
    path = out / RUN_FILE
    path.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def write_config(out: Path, config_dict: dict[str, Any]) -> Path:
    path = out / CONFIG_FILE
    path.write_text(yaml.safe_dump(config_dict, sort_keys=False, allow_unicode=True))
    return path


def run_info(
    *,
    name: str,
    method: str,
    base_model: str,
    base_model_dir: str,
    template: ChatTemplate,
    tokenizer: Any,
    dataset: dict[str, Any],
    context: dict[str, Any],
    metrics: dict[str, Any],
) -> dict[str, Any]:
    return {
        "name": name,
        "method": method,
        "base_model": base_model,
        "base_model_dir": base_model_dir,
        "template": {"name": template.name, "sha256": template_sha256(template)},
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
        "dataset": dataset,
        "context": context,
        "metrics": metrics,
        "versions": library_versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def library_versions() -> dict[str, str]:
    out = {}
    for name in ("sftforge", "torch", "transformers", "peft", "accelerate", "tokenizers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def read_run_info(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / RUN_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
