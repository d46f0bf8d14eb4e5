"""Hostile model and tokenizer folders: their Python never runs, even with ``y`` on
standard input (transformers asks there when trust_remote_code is left unset), and every
refusal is one clear line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sftforge.remote_code import RemoteCodeRefusedError, refuse_pickled_weights

EVIL = """
from pathlib import Path
Path({marker!r}).write_text("ran")
"""


def _plant_code(folder: Path, marker: Path) -> None:
    for name in ("configuration_evil.py", "modeling_evil.py", "tokenization_evil.py"):
        (folder / name).write_text(EVIL.format(marker=str(marker)))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sftforge", *args],
        input="y\ny\ny\n",
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.fixture()
def hostile_model(tmp_path, tiny_model_dir):
    folder = tmp_path / "evil_model"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="evil",
        architectures=["EvilForCausalLM"],
        auto_map={
            "AutoConfig": "configuration_evil.EvilConfig",
            "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
        },
    )
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "MODEL_CODE_RAN"
    _plant_code(folder, marker)
    return folder, marker


@pytest.fixture()
def hostile_tokenizer(tmp_path, tiny_model_dir):
    folder = tmp_path / "evil_tok"
    folder.mkdir()
    for name in ("tokenizer_config.json", "tokenizer.json"):
        shutil.copyfile(tiny_model_dir / name, folder / name)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(
        tokenizer_class="EvilTokenizer",
        auto_map={"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]},
    )
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    marker = tmp_path / "TOKENIZER_CODE_RAN"
    _plant_code(folder, marker)
    return folder, marker


def test_generate_on_a_hostile_model_folder_runs_nothing(hostile_model, tmp_path):
    folder, marker = hostile_model
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "hi"}) + "\n")
    done = _run(
        [
            "generate",
            str(folder),
            "--input",
            str(prompts),
            "--output",
            str(tmp_path / "o.jsonl"),
            "--max-new-tokens",
            "2",
        ],
        tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "never runs code from a model folder" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()


def test_encode_with_a_hostile_tokenizer_folder_runs_nothing(hostile_tokenizer, tmp_path):
    folder, marker = hostile_tokenizer
    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yo"},
                ]
            }
        )
        + "\n"
    )
    done = _run(
        [
            "encode",
            "--template",
            "chatml",
            "--tokenizer",
            str(folder),
            str(data),
            "--output",
            str(tmp_path / "o.jsonl"),
        ],
        tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "never runs code from a tokenizer folder" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()


def test_a_native_architecture_with_an_auto_map_loads_natively(tmp_path, tiny_model_dir):
    """Many real folders (Qwen, ...) carry an auto_map for a type transformers has: the
    native class is used and the folder's code does not run."""
    from sftforge.models.load import load_causal_lm

    folder = tmp_path / "llama_with_map"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "RAN"
    _plant_code(folder, marker)
    model = load_causal_lm(folder)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not marker.exists()


def test_pickled_weights_are_refused(tmp_path, tiny_model_dir):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    for f in folder.glob("*.safetensors"):
        f.unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(RemoteCodeRefusedError, match="pickle"):
        refuse_pickled_weights(folder)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(RemoteCodeRefusedError, match=r"adapter_model\.bin"):
        refuse_pickled_weights(adapter)


def test_every_loader_passes_trust_remote_code_false():
    """A source check: every from_pretrained call in the package names trust_remote_code
    (through NO_REMOTE_CODE), so no future loader can fall back to asking on stdin."""
    import re

    root = Path(__file__).resolve().parents[2] / "src" / "sftforge"
    missing = []
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"(\w+)\.from_pretrained\(", text):
            if match.group(1) in ("PeftModel",):
                continue  # loads adapter weights only; its base comes from load_causal_lm
            call = text[match.end() : text.find(")\n", match.end()) + 1]
            if "NO_REMOTE_CODE" not in call and "**kwargs" not in call:
                line = text[: match.start()].count("\n") + 1
                missing.append(f"{path.relative_to(root)}:{line}")
    assert not missing, f"from_pretrained without NO_REMOTE_CODE: {missing}"
