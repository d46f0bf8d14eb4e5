"""Model and tokenizer folders never run their own code, and pickles are never loaded.

A folder from a stranger can carry Python files and an ``auto_map`` in ``config.json`` or
``tokenizer_config.json`` naming them. transformers runs that code when
``trust_remote_code`` is true, and *asks on standard input* when it is left unset (so
``echo y | ...`` ran it). sftforge passes ``trust_remote_code=False`` to every loader
(:data:`NO_REMOTE_CODE`) and, before loading, refuses a folder whose architecture or
tokenizer exists only as code inside the folder (:func:`refuse_remote_code`), with an
error that says so instead of a traceback. Weights are read from safetensors only
(:func:`refuse_pickled_weights`): a ``.bin``/``.pt`` pickle can run code when unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sftforge.errors import SftForgeError

#: Keyword arguments for every ``from_pretrained``: never run a folder's code, never ask.
NO_REMOTE_CODE: dict[str, Any] = {"trust_remote_code": False}

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class RemoteCodeRefusedError(SftForgeError, ValueError):
    """A model or tokenizer folder needs code of its own, which sftforge never runs."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}  # the loader reports unreadable files itself
    return data if isinstance(data, dict) else {}


def _native_model_type(model_type: Any) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return isinstance(model_type, str) and model_type in CONFIG_MAPPING_NAMES


def _native_tokenizer_class(name: Any) -> bool:
    import transformers

    if not isinstance(name, str) or not name:
        return True  # no class named: transformers picks one from tokenizer.json
    return getattr(transformers, name, None) is not None or (
        name.endswith("Fast") and getattr(transformers, name[: -len("Fast")], None) is not None
    )


def refuse_remote_code(folder: str | Path) -> None:
    """Raise :class:`RemoteCodeRefusedError` when loading ``folder`` would need code that
    ships inside it. A folder whose ``auto_map`` only duplicates a class transformers has
    natively loads as usual (with ``trust_remote_code=False`` the native class is used)."""
    root = Path(folder)
    if not root.is_dir():
        return
    config = _read_json(root / "config.json")
    if config.get("auto_map") and not _native_model_type(config.get("model_type")):
        raise RemoteCodeRefusedError(
            f"{root / 'config.json'}: this model folder's architecture "
            f"({config.get('model_type')!r}) exists only as Python code inside the folder "
            f"(auto_map: {', '.join(map(str, config['auto_map']))}); sftforge never runs code "
            "from a model folder. Use a model whose architecture transformers supports."
        )
    tok_config = _read_json(root / "tokenizer_config.json")
    if tok_config.get("auto_map") and not _native_tokenizer_class(
        tok_config.get("tokenizer_class")
    ):
        raise RemoteCodeRefusedError(
            f"{root / 'tokenizer_config.json'}: this tokenizer "
            f"({tok_config.get('tokenizer_class')!r}) exists only as Python code inside the "
            "folder (auto_map); sftforge never runs code from a tokenizer folder. Use a folder "
            "with a tokenizer.json (a fast tokenizer needs no code)."
        )


def refuse_pickled_weights(folder: str | Path) -> None:
    """Raise when ``folder`` holds its weights only as pickles (``pytorch_model.bin``,
    ``adapter_model.bin`` and the like) and no safetensors."""
    root = Path(folder)
    if not root.is_dir() or any(root.glob("*.safetensors")):
        return
    pickles = sorted(
        p.name for p in root.iterdir() if p.suffix in _PICKLE_SUFFIXES and "model" in p.name
    )
    if pickles:
        raise RemoteCodeRefusedError(
            f"{root}: weights only as pickle files ({', '.join(pickles)}); unpickling can run "
            "code, so sftforge reads safetensors only. Convert them to safetensors with a "
            "tool you trust."
        )
