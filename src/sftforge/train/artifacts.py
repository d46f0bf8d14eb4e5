"""The model directory contract: what a finished run leaves behind.

::

    adapter_model.safetensors + adapter_config.json   (LoRA / QLoRA)   or
    model.safetensors + config.json                   (full fine-tuning, merged models)
    tokenizer.json, tokenizer_config.json             chat_template = the training template
    template.json      the full template definition (chat, generate and eval read it)
    train_config.yaml  the resolved config
    run.json           base model (portable reference + weights digest), dataset manifest
                       hash and verification, tokenizer and template hashes, run context,
                       before/after validation metrics, library versions. Written last:
                       its presence marks a finished run.
    audit.json         the supervision audit
    metrics.jsonl      every logged metric;  loss.png  the loss curve

Every file is published atomically (written to a temporary sibling, renamed into place,
normal file modes): a crash leaves the previous file or the new one, never a partial.

Setting the tokenizer's ``chat_template`` to the exported template means transformers,
vLLM and Ollama users get the training template by default.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from sftforge.fsutil import TMP_PREFIX, atomic_write_text, fix_tree_modes
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


def publish_files(out: Path, write: Callable[[Path], None]) -> list[str]:
    """Let ``write`` fill a temporary folder inside ``out``, then rename each file it wrote
    into ``out`` (one atomic rename per file, normal modes). Returns the names published.
    For writers that take a folder (``save_pretrained``): no file is ever seen half-written.
    """
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}files-", dir=out))
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return move_files(tmp, out)


def move_files(src: Path, out: Path) -> list[str]:
    """Rename every file under ``src`` to the same place under ``out`` (normal modes), then
    remove ``src``. Each file appears in ``out`` whole, in one rename."""
    try:
        fix_tree_modes(src)
        names = []
        for base, _dirs, files in os.walk(src):
            rel = Path(base).relative_to(src)
            for name in sorted(files):
                (out / rel).mkdir(parents=True, exist_ok=True)
                os.replace(Path(base) / name, out / rel / name)
                names.append(str(rel / name))
        return names
    finally:
        shutil.rmtree(src, ignore_errors=True)


def write_json(path: Path, data: Any) -> Path:
    """JSON, published atomically."""
    return atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def save_tokenizer_and_template(out: Path, tokenizer: Any, template: ChatTemplate) -> None:
    set_chat_template(tokenizer, template)
    publish_files(out, lambda tmp: tokenizer.save_pretrained(str(tmp)))
    write_json(out / TEMPLATE_FILE, template.to_dict())


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
    return write_json(out / RUN_FILE, info)


def write_config(out: Path, config_dict: dict[str, Any]) -> Path:
    text = yaml.safe_dump(config_dict, sort_keys=False, allow_unicode=True)
    return atomic_write_text(out / CONFIG_FILE, text)


def read_config(path: Path) -> dict[str, Any] | None:
    """A train_config.yaml written by :func:`write_config`, or None when there is none."""
    with contextlib.suppress(FileNotFoundError):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    return None


#: Weight files whose digest identifies a base model.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def weights_digest(model_dir: str | Path) -> dict[str, Any]:
    """SHA-256 of a model folder's weight files (name, size and content of each), so an
    adapter can tell whether the base it is loaded on is the one it was trained on."""
    from sftforge.data.writer import sha256_file

    root = Path(model_dir)
    files = {}
    for path in sorted(root.iterdir()):
        if path.is_file() and path.suffix in WEIGHT_SUFFIXES and "adapter" not in path.name:
            files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    combined = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"sha256": combined, "files": files}


def run_info(
    *,
    name: str,
    method: str,
    base_model: str,
    base_model_dir: str,
    base_model_weights: dict[str, Any] | None = None,
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
        "base_model_weights": base_model_weights,
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
