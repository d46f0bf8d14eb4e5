"""Encoding: conversation -> input_ids and labels (-100 where not trained)."""

from sftforge.encode.encoder import (
    IGNORE_INDEX,
    POLICIES,
    Encoded,
    Encoder,
    TemplateMismatchWarning,
    TrainedSpan,
    encode,
    template_tokenizer_problems,
)
from sftforge.encode.report import EncodeReport

__all__ = [
    "IGNORE_INDEX",
    "POLICIES",
    "EncodeReport",
    "Encoded",
    "Encoder",
    "TemplateMismatchWarning",
    "TrainedSpan",
    "encode",
    "template_tokenizer_problems",
]
