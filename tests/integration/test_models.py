"""The embedded default model: converted from GGUF once, cached as plain safetensors."""

from __future__ import annotations

import json

import pytest

from sftforge.models.load import ModelLoadError, load_causal_lm, resolve_model_dir


@pytest.mark.slow
def test_default_model_is_converted_once_and_trainable(smollm2_tokenizer, sftforge_cache):
    first = resolve_model_dir("smollm2")
    assert first.is_relative_to(sftforge_cache)
    config = json.loads((first / "config.json").read_text())
    assert "quantization_config" not in config  # Trainer refuses models that carry it
    assert (first / "model.safetensors").is_file() and (first / "tokenizer.json").is_file()
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_dir("default") == first  # cached: not converted again
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    model = load_causal_lm(first)
    assert getattr(model, "hf_quantizer", None) is None
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30


def test_unknown_sources_say_what_is_expected(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        resolve_model_dir(tmp_path / "missing")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="LoRA adapter"):
        resolve_model_dir(tmp_path / "adapter")
