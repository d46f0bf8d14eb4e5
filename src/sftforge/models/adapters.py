"""How the trainable model is built: full weights, LoRA, or QLoRA (4-bit base + LoRA),
and merging an adapter back into its base for staged tuning. Methods are choices about
the model, not separate trainers: the training loop is the same for all three.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sftforge.errors import SftForgeError

#: Every attention and MLP projection, per architecture family (``config.model_type``).
#: Adapting all linear layers rather than only q/v is what the QLoRA paper found necessary
#: to match full fine-tuning.
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "mistral": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "qwen3": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gemma": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gemma2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "baichuan": ("W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "chatglm": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
}


class MethodUnavailableError(SftForgeError, RuntimeError):
    """The chosen method cannot run here (QLoRA without a CUDA GPU or bitsandbytes)."""


def lora_targets(model: Any, requested: Sequence[str] | str = "auto") -> list[str]:
    """Target module names: the requested ones, or the architecture's projections."""
    if requested != "auto":
        return list(requested)
    model_type = getattr(model.config, "model_type", "")
    if model_type in LORA_TARGETS:
        return list(LORA_TARGETS[model_type])
    # Unknown architecture: every Linear except the output head, by leaf name (peft's
    # "all-linear" does the same).
    return ["all-linear"]


def apply_lora(model: Any, *, r: int, alpha: int, dropout: float, targets: Sequence[str]) -> Any:
    """Wrap ``model`` with a LoRA adapter; only adapter weights are trainable afterwards."""
    from peft import LoraConfig, get_peft_model

    target_modules: Any = targets[0] if list(targets) == ["all-linear"] else list(targets)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
        bias="none",
    )
    return get_peft_model(model, config)


def qlora_quantization_config() -> Any:
    """4-bit NF4 with double quantisation and bf16 compute (the QLoRA recipe).

    Raises :class:`MethodUnavailableError` where it cannot run, saying why.
    """
    import torch

    if not torch.cuda.is_available():
        raise MethodUnavailableError(
            "train.method=qlora needs a CUDA GPU: bitsandbytes' 4-bit NF4 kernels run on "
            "CUDA only, and this machine has none. Use train.method=lora (same adapters, "
            "unquantised base) or run on a GPU machine."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise MethodUnavailableError(
            "train.method=qlora needs bitsandbytes: pip install 'sftforge[qlora]'"
        ) from exc
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16,
    )


def prepare_for_kbit(model: Any, gradient_checkpointing: bool) -> Any:
    """peft's preparation of a quantised base (casts norms to fp32, enables input grads)."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )


def is_adapter_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


class BaseModelMismatchWarning(UserWarning):
    """The base model found for an adapter is not the one it was trained on."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _base_candidates(path: Path) -> list[str]:
    """Where an adapter's base may be, most specific first: the reference as trained with
    (``smollm2``, the path the config gave; a relative one against the training config's
    folder), the recorded folder, the same place relative to the adapter folder (both
    moved together), peft's ``base_model_name_or_path``."""
    from sftforge.tokenizer import DEFAULT_ALIASES

    info = _read_json(path / "run.json")
    peft_ref = str(_read_json(path / "adapter_config.json").get("base_model_name_or_path") or "")
    ref = str(info.get("base_model") or "")
    relative = info.get("base_model_relative")
    beside = str((path / relative).resolve()) if relative else ""
    found: list[str] = []
    for candidate in (ref, str(info.get("base_model_dir") or ""), beside, peft_ref):
        if not candidate:
            continue
        if candidate.lower() in DEFAULT_ALIASES:
            found.append(candidate)
            continue
        p = Path(candidate).expanduser()
        if p.is_absolute():
            found.append(str(p))
            continue
        import yaml

        try:
            config = yaml.safe_load((path / "train_config.yaml").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = None
        if isinstance(config, dict) and config.get("base_dir"):
            found.append(str(Path(config["base_dir"]) / p))
        # A relative path recorded in the folder means the folder: never the current
        # directory, which would pick up whatever happens to sit there.
        found.append(str((path / p).resolve()))
    return list(dict.fromkeys(found))


class BaseModelMismatchError(SftForgeError, ValueError):
    """The base model found for an adapter is not the one it was trained on."""


def resolve_adapter_base(
    path: str | os.PathLike[str],
    explicit: str | os.PathLike[str] | None = None,
    *,
    allow_mismatch: bool = False,
) -> Path:
    """The base model folder of an adapter on this machine: ``explicit`` (``--base``), else
    the first of :func:`_base_candidates` that exists (``smollm2`` converts into this
    machine's cache). Raises :class:`BaseModelMismatchError` when its weights differ from
    the digest run.json recorded at training; ``allow_mismatch`` turns that into a
    :class:`BaseModelMismatchWarning`."""
    import warnings

    from sftforge.models.load import resolve_model_dir
    from sftforge.tokenizer import DEFAULT_ALIASES

    path = Path(path)
    if explicit:
        base = resolve_model_dir(explicit)
    else:
        tried = _base_candidates(path)
        usable = [c for c in tried if c.lower() in DEFAULT_ALIASES or Path(c).exists()]
        if not usable:
            raise SftForgeError(
                f"{path}: cannot find the base model this adapter was trained on (tried: "
                f"{', '.join(tried) or 'nothing recorded'}); pass it with --base"
            )
        base = resolve_model_dir(usable[0])
    problem = base_weights_problem(path, base)
    if problem and not allow_mismatch:
        raise BaseModelMismatchError(f"{problem}. Pass --allow-mismatch to load it anyway.")
    if problem:
        warnings.warn(problem, BaseModelMismatchWarning, stacklevel=2)
    return base


def base_weights_problem(adapter_dir: Path, base: Path) -> str | None:
    """Why ``base`` is not the base recorded in the adapter's run.json, or None. On the
    recorded folder itself, file sizes are compared (cheap); elsewhere the full digest."""
    from sftforge.train.artifacts import weights_digest

    info = _read_json(adapter_dir / "run.json")
    recorded = info.get("base_model_weights") or {}
    if not recorded.get("files"):
        return None
    if str(base) == str(info.get("base_model_dir")):
        sizes = {
            name: (base / name).stat().st_size if (base / name).is_file() else None
            for name in recorded["files"]
        }
        if all(sizes[n] == f["bytes"] for n, f in recorded["files"].items()):
            return None
    if weights_digest(base)["sha256"] == recorded.get("sha256"):
        return None
    return (
        f"{base}: these base weights differ from those {adapter_dir} was trained on "
        "(run.json base_model_weights): the adapter will not behave as it did in training"
    )


def adapter_base(path: str | os.PathLike[str], *, allow_mismatch: bool = False) -> str:
    """The base model folder an adapter directory was trained on, resolved on this machine
    (see :func:`resolve_adapter_base`)."""
    return str(resolve_adapter_base(path, allow_mismatch=allow_mismatch))


def load_with_adapter(
    adapter_dir: str | os.PathLike[str], base_dir: str, **load_kwargs: Any
) -> Any:
    """Base model plus the trained adapter (not merged), for evaluation or generation."""
    from peft import PeftModel

    from sftforge.models.load import load_causal_lm
    from sftforge.remote_code import refuse_pickled_weights

    refuse_pickled_weights(adapter_dir)  # adapter_model.bin is a pickle: never loaded
    base = load_causal_lm(base_dir, **load_kwargs)
    return PeftModel.from_pretrained(base, str(adapter_dir))


def merge_adapter(
    adapter_dir: str | os.PathLike[str],
    base_dir: str | None = None,
    *,
    allow_mismatch: bool = False,
) -> Any:
    """Fold a LoRA adapter into its base weights (in fp32); returns a plain transformers
    model."""
    base = resolve_adapter_base(adapter_dir, base_dir, allow_mismatch=allow_mismatch)
    model = load_with_adapter(adapter_dir, str(base), attn_implementation=None)
    return model.merge_and_unload()
