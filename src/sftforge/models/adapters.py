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


def adapter_base(path: str | os.PathLike[str]) -> str:
    """The base model an adapter directory was trained on (from ``run.json``, else peft's
    ``base_model_name_or_path``)."""
    path = Path(path)
    run = path / "run.json"
    if run.is_file():
        base = json.loads(run.read_text(encoding="utf-8")).get("base_model_dir")
        if base:
            return str(base)
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    return str(config.get("base_model_name_or_path") or "")


def load_with_adapter(
    adapter_dir: str | os.PathLike[str], base_dir: str, **load_kwargs: Any
) -> Any:
    """Base model plus the trained adapter (not merged), for evaluation or generation."""
    from peft import PeftModel

    from sftforge.models.load import load_causal_lm

    base = load_causal_lm(base_dir, **load_kwargs)
    return PeftModel.from_pretrained(base, str(adapter_dir))


def merge_adapter(adapter_dir: str | os.PathLike[str], base_dir: str | None = None) -> Any:
    """Fold a LoRA adapter into its base weights; returns a plain transformers model."""
    base = base_dir or adapter_base(adapter_dir)
    if not base:
        raise SftForgeError(
            f"{adapter_dir}: cannot tell which base model this adapter belongs to; pass --base"
        )
    model = load_with_adapter(adapter_dir, base, attn_implementation=None)
    return model.merge_and_unload()
