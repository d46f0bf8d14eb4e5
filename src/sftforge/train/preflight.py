"""Everything a training config promises that can be checked without loading a model.

``sftforge train --check`` runs it and so does the start of every ``sftforge train``: the
model reference resolves to something loadable (and runs no folder code), the template
resolves, the dataset exists and matches its manifest, the method can run on this
machine. Every problem is listed at once, each naming its config key, seconds after the
command starts instead of after a minute of model loading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sftforge.errors import SftForgeError
from sftforge.train.config import TrainConfig


class PreflightError(SftForgeError, ValueError):
    """A training config cannot run; the message lists every problem found."""


@dataclass
class Preflight:
    """What was checked (``ok``) and what is wrong (``problems``), each naming a key."""

    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self, key: str, fn: Any) -> Any:
        try:
            result = fn()
        except (SftForgeError, OSError, ValueError) as exc:
            self.problems.append(f"{key}: {exc}")
            return None
        if isinstance(result, str):
            self.ok.append(f"{key}: {result}")
        return result

    def raise_if_failed(self, where: str) -> None:
        if self.problems:
            lines = "\n  ".join(self.problems)
            raise PreflightError(f"{where}: the config cannot run:\n  {lines}")


def _model(config: TrainConfig) -> str:
    from sftforge.remote_code import refuse_remote_code
    from sftforge.tokenizer import DEFAULT_ALIASES, smollm2_gguf_path

    ref = config.model.path
    if ref.lower() in DEFAULT_ALIASES:
        return f"{ref} (the embedded default, {smollm2_gguf_path().name})"
    path = config.resolve(ref)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"{path}: a model is a folder with config.json, or a .gguf file")
        return f"{path} (GGUF)"
    if not (path / "config.json").is_file():
        hint = (
            " (a LoRA adapter: merge it first)" if (path / "adapter_config.json").is_file() else ""
        )
        raise ValueError(f"{path}: no config.json here{hint}")
    refuse_remote_code(path)
    return str(path)


def _template(config: TrainConfig) -> str:
    from sftforge.templates import get_template, load_template

    spec = config.model.template
    if spec.endswith(".json"):
        return f"{load_template(config.resolve(spec)).name} ({config.resolve(spec)})"
    if spec == "hf":
        return _hf_template_source(config)
    return get_template(spec).name


def _hf_template_source(config: TrainConfig) -> str:
    """``hf`` needs a chat template in the model's tokenizer files: look without loading."""
    from sftforge.tokenizer import DEFAULT_ALIASES

    ref = config.model.path
    if ref.lower() in DEFAULT_ALIASES or ref.endswith(".gguf"):
        return "hf (the chat template embedded in the GGUF)"
    folder = config.resolve(ref)
    if (folder / "chat_template.jinja").is_file():
        return f"hf ({folder / 'chat_template.jinja'})"
    try:
        data = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if isinstance(data, dict) and data.get("chat_template"):
        return f"hf ({folder / 'tokenizer_config.json'})"
    raise ValueError(
        f"'hf' uses the tokenizer's own chat template, and {folder} has none; name a built-in "
        "template (sftforge templates list) or a template.json"
    )


def _data(config: TrainConfig) -> str:
    from sftforge.train.data import dataset_files

    files = dataset_files(
        config.resolve(config.data.path),
        config.resolve(config.data.validation) if config.data.validation else None,
        verify=config.data.verify,
    )
    state = "verified against manifest.json"
    if files.verification is None or not files.verification.verified:
        reason = files.verification.skipped_reason if files.verification else "not checked"
        state = f"not verified ({reason})"
    val = f", validation {files.validation}" if files.validation else ""
    return f"train {files.train}{val}; {state}"


def _method(config: TrainConfig) -> str:
    if config.train.method == "qlora":
        from sftforge.models.adapters import qlora_quantization_config

        qlora_quantization_config()  # raises with the reason where it cannot run
    return config.train.method


def preflight(config: TrainConfig) -> Preflight:
    """Run every check; raise :class:`PreflightError` listing all problems."""
    result = Preflight()
    result.check("model.path", lambda: _model(config))
    result.check("model.template", lambda: _template(config))
    result.check("data.path", lambda: _data(config))
    result.check("train.method", lambda: _method(config))
    result.raise_if_failed(f"training config {config.name!r}")
    return result


def describe(result: Preflight) -> str:
    return "\n".join(f"  ok  {line}" for line in result.ok)
