"""The embedded default model: converted from GGUF once, cached as plain safetensors."""

from __future__ import annotations

import json

import pytest

from sftforge.fsutil import default_file_mode
from sftforge.models.load import (
    SOURCE_FILE,
    UNKNOWN_BASE_DTYPE,
    ModelLoadError,
    base_float_dtype,
    load_causal_lm,
    resolve_model_dir,
)


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
    # Published with normal modes (not the 0700/0600 of the temporary folder).
    for path in first.iterdir():
        assert path.stat().st_mode & 0o777 == default_file_mode(), path.name
    # The GGUF is Q4_1: its original float dtype is unknown, so merges default to bf16.
    assert json.loads((first / SOURCE_FILE).read_text())["float_dtype"] is None
    assert base_float_dtype(first) == UNKNOWN_BASE_DTYPE == "bfloat16"


def test_base_float_dtype(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"dtype": "float16"}))
    assert base_float_dtype(tmp_path) == "float16"
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    assert base_float_dtype(tmp_path) == "bfloat16"
    (tmp_path / "config.json").write_text("{}")
    assert base_float_dtype(tmp_path) == "float32"
    (tmp_path / SOURCE_FILE).write_text(json.dumps({"float_dtype": "float16"}))
    assert base_float_dtype(tmp_path) == "float16"


def test_unknown_sources_say_what_is_expected(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        resolve_model_dir(tmp_path / "missing")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="LoRA adapter"):
        resolve_model_dir(tmp_path / "adapter")
