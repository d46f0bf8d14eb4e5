"""Cleaning and filter blocks: planted positives and negatives, reasons and details, counts
that reconcile through the sink, idempotent transforms, and the block registry."""

from __future__ import annotations

import itertools
import json
import pickle
from pathlib import Path

import pytest

from sftforge.data.block import RejectSink, run_blocks
from sftforge.data.clean import (
    CLEANERS,
    BlockConfigError,
    PlaceholderFill,
    UnicodeClean,
    WhitespaceClean,
    fix_mojibake,
)
from sftforge.data.filters import (
    BLOCKS,
    FILTERS,
    EchoFilter,
    LanguageFilter,
    LengthFilter,
    PlaceholderFilter,
    RefusalFilter,
    RepetitionFilter,
    block_params,
    build_block,
    detect_language,
    looks_like_code,
    repetition_ratio,
)
from sftforge.types import Conversation, Message, as_conversation

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def chat(*turns: str, source: str | None = None, input: str | None = None) -> Conversation:
    """Alternating user/assistant turns; ``input`` goes on the first user message."""
    messages = []
    for i, text in enumerate(turns):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append(Message(role, text, input=input if i == 0 else None))
    return Conversation(tuple(messages), meta={"source": source} if source else {})


def run(block, conversations):
    """Kept conversations and the sink; checks the block's counts reconcile."""
    sink = RejectSink(max_examples=100)
    kept = list(block.run(conversations, sink))
    counts = sink.stage(block.name)
    assert counts.seen == len(conversations)
    assert counts.kept == len(kept)
    assert counts.reconciles()
    return kept, sink


def rejects(sink: RejectSink, stage: str) -> list[dict]:
    return [e for (s, _), examples in sink.examples.items() if s == stage for e in examples]


def verdict(block, conversation):
    """``(reason, detail)`` of one conversation, or None when kept (through ``run``)."""
    kept, sink = run(block, [conversation])
    if kept:
        return None
    [reject] = rejects(sink, block.name)
    return reject["reason"], reject["detail"]


def load_assets(name: str) -> list[Conversation]:
    with open(ASSETS / name, encoding="utf-8") as fh:
        return [as_conversation(json.loads(line)) for line in fh]


@pytest.fixture(scope="module")
def real_data() -> list[Conversation]:
    return load_assets("conversations_en.jsonl") + load_assets("conversations_zh.jsonl")


# -- unicode -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        ("cafÃ©", "café"),
        ("â€œquotedâ€\x9d", "“quoted”"),
        ("naÃ¯ve", "naïve"),
        ("The Mona Lisa\x92s smile", "The Mona Lisa’s smile"),
        ("Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "привет"),
        ("æ—¥æœ¬", "日本"),
    ],
)
def test_mojibake_is_repaired(broken, fixed):
    assert fix_mojibake(broken) == fixed
    block = UnicodeClean()
    [out], _ = run(block, [chat("Say it", broken)])
    assert out.messages[1].content == fixed
    assert block.changed == 1 and block.changes["mojibake"] == 1


def test_unicode_nfc_and_optional_nfkc():
    decomposed = "cafe\u0301 ＡＢＣ ﬁ"
    nfc = UnicodeClean()
    [out], _ = run(nfc, [chat(decomposed, "ok")])
    assert out.messages[0].content == "café ＡＢＣ ﬁ"  # composed; width and ligature kept
    assert nfc.changes == {"normalization": 1}
    nfkc = UnicodeClean(form="NFKC")
    [out], _ = run(nfkc, [chat(decomposed, "ok")])
    assert out.messages[0].content == "café ABC fi"


@pytest.mark.parametrize(
    "text",
    [
        "Plain ASCII text.",
        "你好，世界！“引号”和（全角括号），ＡＢＣ。",  # full-width punctuation stays
        "Crème brûlée – “curly” quotes… café",
        "Emoji 👨‍👩‍👧 and Ελληνικά, русский, 日本語のかな",
    ],
)
def test_unicode_leaves_clean_text_alone(text):
    block = UnicodeClean()
    conv = chat("q", text)
    [out], _ = run(block, [conv])
    assert out is conv  # not even a copy
    assert block.changed == 0


def test_unicode_is_idempotent():
    block = UnicodeClean(form="NFKC")
    convs = [chat("cafÃ©", "x\u0301 ＡＢＣ"), chat("â€œaâ€\x9d", "ok")]
    once, _ = run(block, convs)
    twice, _ = run(UnicodeClean(form="NFKC"), once)
    assert [c.to_dict() for c in twice] == [c.to_dict() for c in once]


# -- whitespace --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messy", "clean", "kind"),
    [
        ("line one\r\nline two\rthree", "line one\nline two\nthree", "newlines"),
        ("trailing   \nspaces\t\nhere  ", "trailing\nspaces\nhere", "trailing_space"),
        ("a\n\n\n\n\n\nb", "a\n\n\nb", "blank_lines"),
        ("a\n \n\t\n  \n\nb", "a\n\n\nb", "blank_lines"),
        ("zero\u200bwidth\ufeff and\u2060 joiner", "zerowidth and joiner", "invisible"),
        ("nul\x00 bell\x07 esc\x1b del\x7f c1\x85 end", "nul bell esc del c1 end", "invisible"),
        ("\n\n  indented first line", "  indented first line", "ends"),
        ("全角空格结尾\u3000\u3000\n下一行", "全角空格结尾\n下一行", "trailing_space"),
    ],
)
def test_whitespace_cleanup(messy, clean, kind):
    block = WhitespaceClean()
    [out], _ = run(block, [chat("q", messy)])
    assert out.messages[1].content == clean
    assert block.changes[kind] == 1


def test_whitespace_keeps_code_indentation_tabs_and_two_blank_lines():
    code = "def f(x):\n\tif x:\n        return 1   \n\n\n    return 2\n"
    [out], _ = run(WhitespaceClean(), [chat("code", code)])
    assert out.messages[1].content == "def f(x):\n\tif x:\n        return 1\n\n\n    return 2"


def test_whitespace_joiners_kept_unless_asked():
    text = "family 👨\u200d👩\u200d👧 and Persian می\u200cخواهم"
    conv = chat("q", text)
    [out], _ = run(WhitespaceClean(), [conv])
    assert out is conv
    [out], _ = run(WhitespaceClean(keep_joiners=False), [conv])
    assert "\u200d" not in out.messages[1].content and "\u200c" not in out.messages[1].content


def test_whitespace_drops_conversation_emptied_by_cleaning():
    block = WhitespaceClean()
    emptied = chat("question", "\u200b\u200b \x00")
    fine = chat("question", "answer", input="\u200b")  # an emptied input just goes away
    kept, sink = run(block, [emptied, fine])
    assert [c.messages[0].input for c in kept] == [None]
    [reject] = rejects(sink, "whitespace")
    assert reject["reason"] == "empty_after_cleaning"
    assert reject["detail"] == "messages[1] (assistant) had 4 chars, none left"
    assert sink.stage("whitespace").to_dict() == {
        "seen": 2,
        "kept": 1,
        "rejected": {"empty_after_cleaning": 1},
    }


def test_whitespace_is_idempotent_and_leaves_clean_text_alone(real_data):
    messy = [
        chat("a  \r\n\r\n\r\n\r\nb\u200b", "  x\t\n\n\n\n\ny \x00\n"),
        chat("\n\nq", "    code\n\n\n\n"),
    ]
    once, _ = run(WhitespaceClean(), messy + real_data)
    block = WhitespaceClean()
    twice, _ = run(block, once)
    assert block.changed == 0
    assert all(a is b for a, b in zip(once, twice, strict=True))


def test_roles_limit_cleaning():
    conv = chat("user  ", "assistant  ")
    [out], _ = run(WhitespaceClean(roles=["assistant"]), [conv])
    assert [m.content for m in out.messages] == ["user  ", "assistant"]


# -- placeholder fill --------------------------------------------------------------------------


def test_placeholder_fill_substitutes_known_names_only():
    block = PlaceholderFill(values={"name": "Forge", "author": "sftforge"})
    identity = chat("Who are you?", "I am {{name}}, an AI assistant developed by {{ author }}.")
    other = chat("hi", "Hello {{unknown}} and {{name}}")
    untouched = chat("hi", "Hello")
    kept, _ = run(block, [identity, other, untouched])
    assert kept[0].messages[1].content == "I am Forge, an AI assistant developed by sftforge."
    assert kept[1].messages[1].content == "Hello {{unknown}} and Forge"
    assert kept[2] is untouched
    assert block.changed == 2 and block.changes == {"filled": 2}


def test_placeholder_fill_then_filter_on_identity_style_data():
    rows = [
        chat("Who are you?", "I am {{name}}, an AI assistant developed by {{author}}."),
        chat("你是谁？", "您好，我是 {{name}}，一个由 {{author}} 开发的人工智能助手。"),
    ]
    sink = RejectSink()
    blocks = [
        build_block("placeholder_fill", values={"name": "Forge", "author": "sftforge"}),
        build_block("placeholder"),
    ]
    kept = list(run_blocks(blocks, rows, sink))
    assert len(kept) == 2
    assert kept[1].messages[1].content == "您好，我是 Forge，一个由 sftforge 开发的人工智能助手。"
    # Without the fill, the filter drops them.
    kept, sink = run(PlaceholderFilter(), rows)
    assert kept == []
    assert [r["detail"] for r in rejects(sink, "placeholder")] == [
        "messages[1] (assistant): '{{name}}'",
        "messages[1] (assistant): '{{name}}'",
    ]


def test_placeholder_fill_custom_pattern_and_errors():
    block = PlaceholderFill(values={"name": "Forge"}, pattern=r"<<(\w+)>>")
    [out], _ = run(block, [chat("hi", "I am <<name>>.")])
    assert out.messages[1].content == "I am Forge."
    with pytest.raises(BlockConfigError, match="values must be a non-empty mapping"):
        PlaceholderFill(values={})
    with pytest.raises(BlockConfigError, match="needs a group"):
        PlaceholderFill(values={"a": "b"}, pattern=r"\{\{\w+\}\}")


# -- length ------------------------------------------------------------------------------------


def test_length_in_characters_per_conversation():
    block = LengthFilter(min_chars=10, max_chars=50)
    assert verdict(block, chat("hi", "yo")) == (
        "too_short",
        "conversation: 4 chars < min_chars 10",
    )
    assert verdict(block, chat("q" * 30, "a" * 30)) == (
        "too_long",
        "conversation: 60 chars > max_chars 50",
    )
    assert verdict(block, chat("question", "an answer")) is None
    # input counts as prompt text
    assert verdict(block, chat("q", "a", input="x" * 60))[0] == "too_long"


def test_length_per_message_and_answer_only():
    long_prompt = chat("x" * 500, "short answer, but enough")
    assert verdict(LengthFilter(max_chars=100), long_prompt)[0] == "too_long"
    assert verdict(LengthFilter(max_chars=100, answer_only=True), long_prompt) is None
    multi = chat("first question", "fine answer", "second", "no")
    assert verdict(LengthFilter(min_chars=3, scope="message"), multi) == (
        "too_short",
        "messages[3] (assistant): 2 chars < min_chars 3",
    )
    assert verdict(LengthFilter(min_chars=3, scope="message", answer_only=True), multi) == (
        "too_short",
        "messages[3] (assistant): 2 chars < min_chars 3",
    )
    assert verdict(LengthFilter(min_chars=12, answer_only=True), multi) is None  # 11 + 2


def test_length_in_tokens(smollm2_tokenizer):
    tok = smollm2_tokenizer
    answer = "The quick brown fox jumps over the lazy dog."
    n = len(tok(answer, add_special_tokens=False)["input_ids"])
    block = LengthFilter(min_tokens=n + 1, tokenizer=tok, scope="message", answer_only=True)
    assert verdict(block, chat("Write a pangram.", answer)) == (
        "too_short",
        f"messages[1] (assistant): {n} tokens < min_tokens {n + 1}",
    )
    block = LengthFilter(max_tokens=n - 1, tokenizer=tok, answer_only=True)
    assert verdict(block, chat("Write a pangram.", answer)) == (
        "too_long",
        f"answers: {n} tokens > max_tokens {n - 1}",
    )
    exact = {"min_tokens": n, "max_tokens": n}
    assert (
        verdict(LengthFilter(tokenizer=tok, answer_only=True, **exact), chat("q", answer)) is None
    )


def test_length_chars_checked_before_tokens(smollm2_tokenizer):
    block = LengthFilter(min_chars=5, max_tokens=10, tokenizer=smollm2_tokenizer)
    assert verdict(block, chat("a", "b"))[1] == "conversation: 2 chars < min_chars 5"
    assert verdict(block, chat("word " * 20, "ok"))[0] == "too_long"


@pytest.mark.parametrize("name", ["smollm2", "mistral", "deepseek", "qwen"])
def test_length_byte_bounds_agree_with_tokenizing_everything(real_tokenizers, real_data, name):
    tok = real_tokenizers[name]
    extra = [chat("x", "#" * 400), chat("y", " " * 300), chat("中文" * 100, "ﬁ ㍿ ＡＢＣ İstanbul")]
    data = real_data + extra
    for bounds in [{"min_tokens": 3, "max_tokens": 300}, {"min_tokens": 40}, {"max_tokens": 64}]:
        for scope in ("conversation", "message"):
            fast = LengthFilter(tokenizer=tok, scope=scope, **bounds)
            exact = LengthFilter(tokenizer=tok, scope=scope, byte_bounds=False, **bounds)
            assert [fast.check(c) is None for c in data] == [exact.check(c) is None for c in data]


def test_length_config_errors():
    with pytest.raises(BlockConfigError, match="give at least one of"):
        LengthFilter()
    with pytest.raises(BlockConfigError, match=r"min_chars \(10\) is greater than max_chars"):
        LengthFilter(min_chars=10, max_chars=5)
    with pytest.raises(BlockConfigError, match="need a tokenizer"):
        LengthFilter(max_tokens=10)
    with pytest.raises(BlockConfigError, match="scope must be"):
        LengthFilter(max_chars=10, scope="turn")
    with pytest.raises(BlockConfigError, match="min_chars must be an integer >= 0, got -1"):
        LengthFilter(min_chars=-1)


# -- repetition --------------------------------------------------------------------------------


def test_repetition_catches_loops_in_english_and_chinese():
    block = RepetitionFilter()
    loop = "I like apples and I like pears. " * 20
    reason, detail = verdict(block, chat("Tell me what you like.", loop))
    assert reason == "repetitive"
    assert detail.startswith("messages[1] (assistant): 0.9")
    assert "word 3-grams repeat (max 0.35)" in detail
    zh_loop = "今天天气很好，我们一起去公园散步吧。" * 8
    reason, detail = verdict(block, chat("说点什么", zh_loop))
    assert reason == "repetitive" and "char 10-grams repeat (max 0.3)" in detail


def test_repetition_keeps_real_answers_short_text_and_code(real_data):
    kept, sink = run(RepetitionFilter(), real_data)
    assert len(kept) == len(real_data), rejects(sink, "repetition")
    block = RepetitionFilter()
    assert verdict(block, chat("q", "no no no no no")) is None  # too few n-grams to judge
    code = "```python\n" + "x = x + 1\n" * 50 + "```\nThat adds fifty to x."
    assert verdict(block, chat("q", code)) is None
    assert verdict(RepetitionFilter(skip_code=False), chat("q", code))[0] == "repetitive"
    # prompts are not judged by default
    assert verdict(block, chat("spam " * 100, "ok")) is None
    assert verdict(RepetitionFilter(roles=["user"]), chat("spam " * 100, "ok"))[0] == "repetitive"


def test_repetition_ratio_units():
    assert repetition_ratio("a b c d e f") == (0.0, 4, "word")
    ratio, total, unit = repetition_ratio("好" * 30)
    assert unit == "char" and total == 21 and ratio == pytest.approx(20 / 21)


# -- language ----------------------------------------------------------------------------------

FRENCH = (
    "Le chat est assis sur le tapis et regarde la pluie tomber doucement sur le jardin. "
    "Il attend que le soleil revienne pour sortir jouer avec les feuilles."
)
ENGLISH = (
    "The cat is sitting on the mat and watching the rain fall gently on the garden. "
    "It is waiting for the sun to come back so it can go out and play with the leaves."
)
CHINESE = (
    "猫坐在垫子上，看着雨轻轻地落在花园里。它在等待太阳回来，这样它就可以出去和树叶一起玩耍了。"
)


def test_detect_language_matches_langid():
    from langid.langid import LanguageIdentifier, model

    reference = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    for text in (FRENCH, ENGLISH, CHINESE, "Das ist ein kurzer deutscher Satz über Hunde.", ""):
        lang, prob = detect_language(text)
        ref_lang, ref_prob = reference.classify(text)
        assert lang == ref_lang
        assert prob == pytest.approx(ref_prob, rel=1e-6)
    assert detect_language(FRENCH)[0] == "fr"
    assert detect_language(CHINESE)[0] == "zh"


def test_language_rejects_wrong_language_per_source():
    block = LanguageFilter(languages={"alpaca_zh*": ["zh"], "identity.json": ["en", "zh"]})
    english = chat("Describe the scene in the garden.", ENGLISH, source="data/alpaca_en.json")
    french = chat("Décris la scène dans le jardin, s'il te plaît.", FRENCH, source="a.json")
    chinese_in_zh = chat("描述一下花园里的场景。", CHINESE, source="data/alpaca_zh_demo.json")
    english_in_zh = chat("Describe the scene in the garden.", ENGLISH, source="alpaca_zh_demo.json")
    chinese_in_en = chat("描述一下花园里的场景。", CHINESE, source="other.json")
    either = chat("描述一下花园里的场景。", CHINESE, source="shared/alpaca/identity.json")
    kept, sink = run(block, [english, french, chinese_in_zh, english_in_zh, chinese_in_en, either])
    assert kept == [english, chinese_in_zh, either]
    details = [r["detail"] for r in rejects(sink, "language")]
    assert details[0].startswith("answer: detected fr (p=1.00)") and details[0].endswith(
        ", expected en"
    )
    assert "answer: detected en (p=1.00)" in details[1] and details[1].endswith("expected zh")
    # the short prompt (10 letters < min_letters) is not judged; the answer is
    assert details[2] == "answer: detected zh (p=1.00), expected en"
    assert {r["reason"] for r in rejects(sink, "language")} == {"wrong_language"}


def test_language_mixed_language_modes():
    # An English prompt answered in French: dropped by "all", kept by "any".
    mixed = chat("Describe the scene in the garden in a few sentences, please.", FRENCH)
    assert verdict(LanguageFilter(), mixed)[1].startswith("answer: detected fr")
    assert verdict(LanguageFilter(mode="any"), mixed) is None
    # Translation requests: the answer is not judged.
    translate = chat("Translate this paragraph into French: " + ENGLISH, FRENCH)
    assert verdict(LanguageFilter(), translate) is None
    assert verdict(LanguageFilter(skip_translations=False), translate)[0] == "wrong_language"
    # "combined" judges both together: the longer French answer wins here.
    assert verdict(LanguageFilter(mode="combined"), mixed)[1].startswith("prompt+answer: det")


def test_language_skips_short_code_and_unexpected_sources():
    block = LanguageFilter()
    assert verdict(block, chat("Say hello in Spanish.", "¡Hola!")) is None  # too short
    code = (
        "def calcular_suma(numeros):\n    total = 0\n    for n in numeros:\n"
        "        total += n\n    return total\n\nprint(calcular_suma([1, 2, 3]))"
    )
    assert looks_like_code(code)
    assert not looks_like_code(ENGLISH)
    assert verdict(block, chat("Write a function that sums a list of numbers.", code)) is None
    fenced = "Voici le code :\n```python\n" + code + "\n```"
    assert verdict(block, chat("Write a function that sums a list of numbers.", fenced)) is None
    unjudged = LanguageFilter(default=None, languages={"*_zh*": "zh"})
    assert verdict(unjudged, chat("Décris la scène.", FRENCH, source="x.json")) is None


def test_language_keeps_real_data(real_data):
    block = LanguageFilter(languages={"*_zh*": ["zh"], "*oaast*": ["zh"], "*firefly*": ["zh"]})
    zh_sources = {c.meta["source"] for c in load_assets("conversations_zh.jsonl")}
    assert all(block.expected_for(s) == {"zh"} for s in zh_sources if "minicpm" not in s)
    block = LanguageFilter(default=["en", "zh"])
    kept, sink = run(block, real_data)
    assert len(kept) == len(real_data), rejects(sink, "language")


def test_language_config_errors():
    with pytest.raises(BlockConfigError, match=r"unknown language code\(s\) \['english'\]"):
        LanguageFilter(default=["english"])
    with pytest.raises(BlockConfigError, match="mode must be"):
        LanguageFilter(mode="some")
    with pytest.raises(BlockConfigError, match="languages must map"):
        LanguageFilter(languages=["en"])


# -- placeholders ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "found"),
    [
        ("Hello, I am {{name}}.", "{{name}}"),
        ("Created by {{ author }}.", "{{ author }}"),
        ("Contact <PLACEHOLDER> for details.", "<PLACEHOLDER>"),
        ("Dear <YOUR NAME>, thanks.", "<YOUR NAME>"),
        ("The date is [INSERT DATE HERE].", "[INSERT DATE HERE]"),
        ("Call us at [Insert phone number].", "[Insert phone number]"),
        ("Hello {name}, welcome to our store.", "{name}"),
        ("您好，我是 {{name}}，很高兴为您服务。", "{{name}}"),
        ("请联系 [INSERT 联系人]。", "[INSERT 联系人]"),
    ],
)
def test_placeholder_positives(answer, found):
    assert verdict(PlaceholderFilter(), chat("Introduce yourself.", answer)) == (
        "placeholder",
        f"messages[1] (assistant): {found!r}",
    )


def test_placeholder_in_prompt_input_alpaca_noinput():
    conv = chat(
        "Name five companies.", "Apple, Google, Microsoft, Amazon, Meta.", input="<noinput>"
    )
    assert verdict(PlaceholderFilter(), conv) == ("placeholder", "messages[0] (user): '<noinput>'")
    assert verdict(PlaceholderFilter(roles=["assistant"]), conv) is None


@pytest.mark.parametrize(
    "answer",
    [
        'In Python: `print(f"Hello {name}")` prints a greeting.',
        "```jinja\n<p>Hello {{ user.name }}</p>\n```",
        'Use print(f"Hello {name}") to greet.',
        "The fraction is \\frac{a}{b} and the set is {1, 2, 3}.",
        'The JSON is {"name": "Ann"}.',
        "In JavaScript, `${name}` interpolates; so does ${name} in a template literal.",
        "Use <div> and <span> tags; generics look like List<T>.",
        "See reference [1] and the [Smith 2020] paper.",
        "Press [Enter] to continue, or [Ctrl]+[C] to stop.",
        "In Jinja, {{ user.name }} prints the name of the user.",
        "I am Forge, an AI assistant developed by sftforge.",
    ],
)
def test_placeholder_negatives(answer):
    assert verdict(PlaceholderFilter(), chat("Explain.", answer)) is None


def test_placeholder_template_requests_and_quoted_placeholders():
    letter = "Dear [Recipient],\n\nThe meeting is on [insert date].\n\nBest,\n[Your Name]"
    assert verdict(PlaceholderFilter(), chat("Write an email template.", letter)) is None
    assert verdict(PlaceholderFilter(), chat("Write an email.", letter))[1].endswith(
        "'[insert date]'"
    )
    field = PlaceholderFilter(kinds=["template_field"])
    assert verdict(field, chat("Write an email.", letter))[1].endswith("'[Your Name]'")
    # A {name} the prompt itself holds is what the conversation is about; and {name} is only
    # looked for in answers.
    quoted = chat("What does {name} mean in 'Hello {name}'?", "It marks where {name} goes.")
    assert verdict(PlaceholderFilter(), quoted) is None
    assert verdict(PlaceholderFilter(), chat("Hi {name}, how are you?", "Fine.")) is None
    assert verdict(PlaceholderFilter(), chat("Hi {{name}}, how are you?", "Fine."))[0]
    jinja = chat("What does {{ name }} do in a Jinja template?", "It prints the variable name.")
    assert verdict(PlaceholderFilter(), jinja) is None


def test_placeholder_extra_patterns_and_errors():
    block = PlaceholderFilter(extra_patterns=[r"%%\w+%%"])
    assert verdict(block, chat("q", "Hi %%USER%%"))[1] == "messages[1] (assistant): '%%USER%%'"
    with pytest.raises(BlockConfigError, match=r"unknown kind\(s\) \['curly'\]"):
        PlaceholderFilter(kinds=["curly"])
    with pytest.raises(BlockConfigError, match="is not a regex"):
        PlaceholderFilter(extra_patterns=["("])


def test_placeholder_keeps_real_data(real_data):
    kept, sink = run(PlaceholderFilter(), real_data)
    assert len(kept) == len(real_data), rejects(sink, "placeholder")


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "found"),
    [
        ("As an AI language model, I cannot browse the web.", "As an AI language model"),
        ("I'm sorry, but I cannot help with that request.", "I'm sorry, but I cannot"),
        ("I’m sorry, but I can’t do that.", "I’m sorry, but I can’t"),
        (
            "I apologize, but as an AI, I am unable to see images.",
            "I apologize, but as an AI, I am unable to",
        ),
        (
            "Sure. I don't have personal opinions, but here are views.",
            "I don't have personal opinions",
        ),
        ("Prices change; my knowledge cutoff is 2021.", "my knowledge cutoff"),
        ("作为一个人工智能，我无法感受情绪。", "作为一个人工智能"),
        ("抱歉，我无法回答这个问题。", "抱歉，我无法"),
        ("对不起，我不能提供这些信息。", "对不起，我不能"),
        ("我是一个人工智能语言模型，没有实时数据。", "我是一个人工智能语言模型"),
        ("我没有个人观点，但可以介绍不同的看法。", "我没有个人观点"),
    ],
)
def test_refusal_positives(answer, found):
    assert verdict(RefusalFilter(), chat("Question?", answer)) == (
        "refusal",
        f"messages[1] (assistant): {found!r}",
    )


@pytest.mark.parametrize(
    "answer",
    [
        "I am Forge, an AI assistant developed by sftforge. How can I help?",
        "A function cannot return two values in C, but it can return a struct.",
        "The sorry state of the roads is due to underfunding.",
        "Artificial intelligence is the study of intelligent agents.",
        "我是 Forge，一个由 sftforge 开发的人工智能助手。",
        "这个陈述的反对观点可能是，你作为一个人工智能助手并不有用。",
        "不好意思这个词表示歉意。",
    ],
)
def test_refusal_negatives(answer):
    assert verdict(RefusalFilter(), chat("Question?", answer)) is None


def test_refusal_roles_extra_patterns_and_far_matches():
    user_refusal = chat("As an AI language model, what do you think?", "I think it is great.")
    assert verdict(RefusalFilter(), user_refusal) is None
    assert verdict(RefusalFilter(roles=["user"]), user_refusal)[0] == "refusal"
    custom = RefusalFilter(extra_patterns=[r"\bI must decline\b"])
    assert verdict(custom, chat("q", "Well, I must decline."))[1].endswith("'I must decline'")
    only = RefusalFilter(use_defaults=False, extra_patterns=["decline"])
    assert verdict(only, chat("q", "As an AI language model, no.")) is None
    deep = "Here is a long answer. " * 300 + "As an AI language model, I cannot verify this."
    assert verdict(RefusalFilter(), chat("q", deep))[0] == "refusal"
    # lowercasing changes the length of "İ": the search falls back to the whole text
    shifted = "İ" * 50 + " I'm sorry, but I cannot do that."
    assert verdict(RefusalFilter(), chat("q", shifted))[0] == "refusal"
    with pytest.raises(BlockConfigError, match="no patterns"):
        RefusalFilter(use_defaults=False)


# -- echoes ------------------------------------------------------------------------------------


def test_echo_positives():
    block = EchoFilter()
    assert verdict(block, chat("hi", " Hi")) == (
        "echo",
        "messages[1] (assistant): answer repeats the prompt (coverage 1.00)",
    )
    sentence = "His family moved to the United States when he was four years old."
    assert verdict(block, chat("Organize the sentences.", sentence, input=sentence)) == (
        "echo",
        "messages[1] (assistant): answer repeats the prompt's input (coverage 1.00)",
    )
    question = "What is the capital city of France and why is it famous?"
    reason, detail = verdict(block, chat(question, question.upper()))
    assert reason == "echo" and "answer repeats the prompt" in detail
    zh = "顾客：你好，我想要点一份鸡肉三明治。"
    assert verdict(block, chat("输入：" + zh, zh))[0] == "echo"


def test_echo_near_copy_detail():
    prompt = "one two three four five six seven eight nine ten eleven twelve thirteen"
    answer = prompt + " fourteen"
    reason, detail = verdict(EchoFilter(), chat(prompt, answer))
    assert reason == "echo"
    assert detail.startswith("messages[1] (assistant): near-copy of the prompt (bigram Jaccard")


@pytest.mark.parametrize(
    ("instruction", "input", "answer"),
    [
        ("Sort the numbers in descending order.", "[4, 8, 15, 9, 0]", "15, 9, 8, 4, 0"),
        (
            "Order the events from the earliest to the latest.",
            "He got his driving license, he joined college, he got a job.",
            "He joined college, he got his driving license, he got a job.",
        ),
        (
            "Add the missing punctuation.",
            "Finally Sara went to the supermarket",
            "Finally, Sara went to the supermarket.",
        ),
        ("Extract the city.", "John flew from Paris to Rome on Monday.", "Rome"),
        ("Classify the sentiment: positive or negative.", "I love it!", "Positive"),
        (
            "Fix the grammar.",
            "She go to school every day with her friends.",
            "She goes to school every day with her friends.",
        ),
    ],
)
def test_echo_negatives(instruction, input, answer):
    assert verdict(EchoFilter(), chat(instruction, answer, input=input)) is None


def test_echo_keeps_real_data_and_judges_every_turn(real_data):
    kept, sink = run(EchoFilter(), real_data)
    assert len(kept) == len(real_data), rejects(sink, "echo")
    multi = chat("Hello there", "Hi! How can I help?", "Repeat after me: I like tea", "I like tea")
    assert verdict(EchoFilter(), multi) is None  # contained, but short against its prompt
    multi = chat(
        "Hello there", "Hi! How can I help?", "I like green tea a lot", "I like green tea a lot"
    )
    assert verdict(EchoFilter(), multi)[1].startswith("messages[3] (assistant): answer repeats")


# -- registry, counts, processes ---------------------------------------------------------------


def test_registry_names_every_block():
    assert set(FILTERS) == {"length", "repetition", "language", "placeholder", "refusal", "echo"}
    assert set(CLEANERS) == {"unicode", "whitespace", "placeholder_fill"}
    assert set(BLOCKS) == set(FILTERS) | set(CLEANERS)
    for name, cls in BLOCKS.items():
        assert cls.name == name  # stage name = block name


def test_build_block_builds_every_block():
    required = {"length": {"max_chars": 100}, "placeholder_fill": {"values": {"name": "Forge"}}}
    for name in BLOCKS:
        block = build_block(name, **required.get(name, {}))
        assert block.name == name
    assert build_block("repetition", max_ratio=0.5, roles=["user", "assistant"]).max_ratio == 0.5
    assert "max_chars" in block_params("length")


def test_build_block_errors_name_the_bad_key():
    with pytest.raises(
        BlockConfigError, match=r"unknown block 'lenght' \(did you mean 'length'\?\)"
    ):
        build_block("lenght")
    with pytest.raises(BlockConfigError) as err:
        build_block("length", max_char=10)
    assert str(err.value).startswith(
        "length: unknown parameter 'max_char' (did you mean 'max_chars'?); valid parameters: "
        "min_chars, max_chars"
    )
    with pytest.raises(BlockConfigError, match="refusal: unknown parameter 'bogus'"):
        build_block("refusal", bogus=1)
    with pytest.raises(BlockConfigError, match=r"placeholder_fill: missing required .* values"):
        build_block("placeholder_fill")
    with pytest.raises(BlockConfigError, match="repetition: max_ratio must be between 0 and 1"):
        build_block("repetition", max_ratio=2)
    with pytest.raises(BlockConfigError, match=r"unknown role\(s\) \['bot'\]"):
        build_block("refusal", roles=["bot"])
    assert issubclass(BlockConfigError, ValueError)


def test_pipeline_counts_reconcile_and_rejects_go_to_the_side_file(tmp_path, real_data):
    planted = [
        chat("cafÃ©?", "Oui, cafÃ©.  \r\n"),
        chat("question", "\u200b"),
        chat("Who are you?", "I am {{name}}."),
        chat("Tell me a story.", "As an AI language model, I cannot tell stories."),
        chat("Say something.", "la la la la " * 30),
        chat("I like green tea a lot", "I like green tea a lot"),
        chat("Describe the garden.", FRENCH),
        chat("q", "a"),
    ]
    data = real_data + planted
    blocks = [
        build_block("unicode"),
        build_block("whitespace"),
        build_block("length", min_chars=5),
        build_block("repetition"),
        build_block("language", default=["en", "zh"]),
        build_block("placeholder"),
        build_block("refusal"),
        build_block("echo"),
    ]
    side = tmp_path / "rejects.jsonl"
    with RejectSink(side) as sink:
        kept = list(run_blocks(blocks, data, sink))
    stages = sink.to_dict()
    assert set(stages) == {b.name for b in blocks}
    assert all(counts.reconciles() for counts in sink.stages.values())
    assert stages["unicode"]["seen"] == len(data)
    for before, after in itertools.pairwise(blocks):
        assert stages[after.name]["seen"] == stages[before.name]["kept"]
    assert stages["echo"]["kept"] == len(kept)
    assert len(data) == len(kept) + sink.total_rejected()
    lines = [json.loads(line) for line in side.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == sink.total_rejected()
    reasons = {(r["stage"], r["reason"]) for r in lines}
    assert {
        ("whitespace", "empty_after_cleaning"),
        ("length", "too_short"),
        ("repetition", "repetitive"),
        ("language", "wrong_language"),
        ("placeholder", "placeholder"),
        ("refusal", "refusal"),
        ("echo", "echo"),
    } <= reasons
    assert blocks[0].changes["mojibake"] == 1
    assert any(c.messages[1].content == "Oui, café." for c in kept)


def test_blocks_pickle_for_worker_processes(smollm2_tokenizer):
    blocks = [
        build_block("unicode"),
        build_block("whitespace"),
        build_block("placeholder_fill", values={"name": "Forge"}),
        build_block("length", max_tokens=100, tokenizer=smollm2_tokenizer),
        build_block("repetition"),
        build_block("language", languages={"*zh*": ["zh"]}),
        build_block("placeholder"),
        build_block("refusal", extra_patterns=["decline"]),
        build_block("echo"),
    ]
    convs = [chat("Who are you?", "I am {{name}}."), chat("Describe the garden.", FRENCH)]
    for block in blocks:
        copy = pickle.loads(pickle.dumps(block))
        assert [c.to_dict() for c in run(copy, convs)[0]] == [
            c.to_dict() for c in run(block, convs)[0]
        ]
