"""The built-in templates, byte-exact to their primary sources.

Source strings and worked examples: ``shared/spec/templates.md`` (summarised in
``docs/templates.md``). Where a source is silent or sources disagree, the choice made is
written in the template's ``notes``; the ``golden`` strings are the spec's worked examples
(system ``'You are a concise assistant.'``, turns ``('What is 2+2?', '4.')`` and
``('And 3+3?', '6.')``) and are checked by the test suite.
"""

from __future__ import annotations

from sftforge.templates.base import Template

#: Appended to the notes of every template without a tool convention (no ``tool_format``).
_NO_TOOLS = (
    " No tool convention: a conversation with tool calls or tool results is refused "
    "(the encoder counts it as 'template_without_tools'), never rendered loosely."
)

LLAMA2_META_DEFAULT_SYSTEM = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as "
    "possible, while being safe.  Your answers should not include any harmful, unethical, "
    "racist, sexist, toxic, dangerous, or illegal content. Please ensure that your responses "
    "are socially unbiased and positive in nature.\n\nIf a question does not make any sense, "
    "or is not factually coherent, explain why instead of answering something not correct. "
    "If you don't know the answer to a question, please don't share false information."
)

ALPACA = Template(
    name="alpaca",
    summary="Stanford Alpaca instruction format (with and without input).",
    source="tatsu-lab/stanford_alpaca train.py @761dc5b PROMPT_DICT",
    notes=(
        "The 'Below is an instruction...' preamble is the default system prompt; a system "
        "message replaces it. The with-input preamble is used when the first user message "
        "has an `input`. Multi-turn (not defined by the source): each further turn repeats "
        "'### Instruction:' / '### Response:' after a blank line following the previous EOS. "
        "The answer follows '### Response:' directly (no space or newline), then EOS."
    )
    + _NO_TOOLS,
    bos_token="<s>",
    eos_token="</s>",
    prefix="{bos}",
    system_format="{system}\n\n",
    default_system=(
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request."
    ),
    default_system_with_input=(
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request."
    ),
    user_format="### Instruction:\n{content}\n\n",
    user_input_format="### Instruction:\n{content}\n\n### Input:\n{input}\n\n",
    turn_separator="\n\n",
    assistant_header="### Response:",
    golden={
        "no_system_1turn": (
            "<s>Below is an instruction that describes a task. Write a response that "
            "appropriately completes the request.\n\n### Instruction:\nWhat is 2+2?\n\n"
            "### Response:4.</s>"
        ),
    },
)

LLAMA2 = Template(
    name="llama2",
    summary="Meta Llama-2 chat: [INST] ... [/INST], <<SYS>> in turn 1, <s>...</s> per pair.",
    source="meta-llama/llama generation.py chat_completion; HF Llama-2-chat chat_template",
    notes=(
        "No default system prompt (Meta removed it on 2023-08-04); pass the old one "
        "explicitly if you need it (sftforge.templates.builtin.LLAMA2_META_DEFAULT_SYSTEM). "
        "Contents are stripped, as Meta's code does. Each pair carries its own BOS; the "
        "answer is ' {answer} ' followed by EOS, and that whole span is trained."
    )
    + _NO_TOOLS,
    bos_token="<s>",
    eos_token="</s>",
    system_format=None,
    system_merge_format="<<SYS>>\n{system}\n<</SYS>>\n\n{content}",
    user_format="{bos}[INST] {content} [/INST]",
    assistant_format=" {content} ",
    strip_content=True,
    golden={
        "system_2turn": (
            "<s>[INST] <<SYS>>\nYou are a concise assistant.\n<</SYS>>\n\nWhat is 2+2? [/INST] "
            "4. </s><s>[INST] And 3+3? [/INST] 6. </s>"
        ),
    },
)

LINLY = Template(
    name="linly",
    summary="Linly Chinese-LLaMA-2 model-card prompt: '### Instruction:{q}  ### Response:'.",
    source="Linly-AI/Chinese-LLaMA-2-7B-hf model card (July 2023)",
    notes=(
        "Uncertain source: only the inference prompt is published. Chosen: the 7B card's "
        "prompt with two spaces before '### Response:', the answer directly after it, then "
        "EOS. No system slot: a system prompt is merged into the first user message "
        "('{system}\\n\\n{user}'). Multi-turn: blocks follow each other directly after EOS."
    )
    + _NO_TOOLS,
    bos_token="<s>",
    eos_token="</s>",
    prefix="{bos}",
    user_format="### Instruction:{content}  ### Response:",
    golden={"no_system_1turn": "<s>### Instruction:What is 2+2?  ### Response:4.</s>"},
)

LINLY_CHATFLOW = Template(
    name="linly_chatflow",
    summary="Linly ChatFlow (LLaMA-1) dialogue: 'User: ...\\nBot: ...'.",
    source="ProjectD-AI/llama_inference llama_dialogue.py @75bc023",
    notes=(
        "Uncertain source (inference code only). Turns end with '\\n' inside a conversation "
        "and with EOS at its end; both are trained. Generation stops at 'User:' or EOS."
    )
    + _NO_TOOLS,
    bos_token="<s>",
    eos_token="</s>",
    prefix="{bos}",
    user_format="User: {content}\n",
    assistant_header="Bot: ",
    end_of_turn="{eos}",
    end_of_turn_mid="\n",
    extra_stop_strings=("User:",),
    golden={"no_system_2turn": "<s>User: What is 2+2?\nBot: 4.\nUser: And 3+3?\nBot: 6.</s>"},
)

NOUS_HERMES = Template(
    name="nous_hermes",
    summary="Nous-Hermes (13b, Llama2-13b) '### Instruction:' / '### Response:' format.",
    source="NousResearch/Nous-Hermes-13b and Nous-Hermes-Llama2-13b model cards",
    notes=(
        "Only the inference prompt is published: BOS and the trailing EOS are assumptions "
        "(as in the spec's golden string). No system slot: merged into the first user "
        "message. Multi-turn: further blocks after a blank line following EOS."
    )
    + _NO_TOOLS,
    bos_token="<s>",
    eos_token="</s>",
    prefix="{bos}",
    user_format="### Instruction:\n{content}\n\n",
    user_input_format="### Instruction:\n{content}\n\n### Input:\n{input}\n\n",
    turn_separator="\n\n",
    assistant_header="### Response:\n",
    golden={"no_system_1turn": "<s>### Instruction:\nWhat is 2+2?\n\n### Response:\n4.</s>"},
)

YAYI = Template(
    name="yayi",
    summary="YaYi (wenge-research): <|System|>/<|Human|>/<|YaYi|> with <|End|>.",
    source="wenge-research/YaYi training/consts.py @31b523d",
    notes=(
        "The end marker '\\n\\n<|End|>' is trained with the answer (loss starts after "
        "'<|YaYi|>:\\n'). Multi-turn is not defined by the authors: chosen, further turns "
        "follow after a blank line ('<|End|>\\n\\n<|Human|>:...'). No BOS (BLOOM tokenizer)."
    )
    + _NO_TOOLS,
    bos_token="",
    eos_token="<|End|>",
    system_format="<|System|>:\n{system}\n\n",
    default_system=(
        "A chat between a human and an AI assistant named YaYi.\nYaYi is a helpful and "
        "harmless language model developed by Beijing Wenge Technology Co.,Ltd."
    ),
    user_format="<|Human|>:\n{content}\n\n",
    user_input_format="<|Human|>:\n{content}\n{input}\n\n",
    turn_separator="\n\n",
    assistant_header="<|YaYi|>:\n",
    end_of_turn="\n\n<|End|>",
    extra_stop_strings=("<|Human|>", "<|YaYi|>"),
    golden={
        "system_1turn": (
            "<|System|>:\nYou are a concise assistant.\n\n<|Human|>:\nWhat is 2+2?\n\n"
            "<|YaYi|>:\n4.\n\n<|End|>"
        ),
    },
)

STABLEBELUGA2 = Template(
    name="stablebeluga2",
    summary="StableBeluga2: '### System:' / '### User:' / '### Assistant:'.",
    source="stabilityai/StableBeluga2 model card (July 2023)",
    notes=(
        "Follows the card's code string (user text on the same line as '### User:'). "
        "Single-turn in the source; chosen multi-turn: further turns after a blank line "
        "following EOS. Training EOS assumed '</s>'."
    )
    + _NO_TOOLS,
    bos_token="<s>",
    eos_token="</s>",
    prefix="{bos}",
    system_format="### System:\n{system}\n\n",
    default_system=(
        "You are Stable Beluga, an AI that follows instructions extremely well. Help as much "
        "as you can. Remember, be safe, and don't do anything illegal."
    ),
    user_format="### User: {content}\n\n",
    turn_separator="\n\n",
    assistant_header="### Assistant:\n",
    golden={
        "system_1turn": (
            "<s>### System:\nYou are a concise assistant.\n\n### User: What is 2+2?\n\n"
            "### Assistant:\n4.</s>"
        ),
    },
)

GUANACO = Template(
    name="guanaco",
    summary="Guanaco (QLoRA, OASST1): '### Human: ...### Assistant: ...', one EOS at the end.",
    source="artidoro/qlora qlora.py @7f4e95a; timdettmers/openassistant-guanaco text field",
    notes=(
        "No separator before the next '### Human:' and one EOS at the end, as in the dataset. "
        "Between turns the '### Human:' marker is what ends an answer, so it is trained with "
        "the answer it ends (and is a stop string). A system prompt is placed before the "
        "first turn followed by one space (spec 'guanaco_system'). The generation prompt "
        "ends with a space; with most tokenizers that space merges into the answer's first "
        "token in later turns' prompts, so earlier turns of multi-turn samples can't satisfy "
        "inference consistency and are left untrained (counted in the encode report)."
    )
    + _NO_TOOLS,
    bos_token="<s>",
    eos_token="</s>",
    prefix="{bos}",
    system_format="{system} ",
    user_format="### Human: {content}",
    assistant_header="### Assistant: ",
    end_of_turn="{eos}",
    end_of_turn_mid="",
    continuation_marker="### Human:",
    requires_alternation=True,
    golden={
        "no_system_2turn": (
            "<s>### Human: What is 2+2?### Assistant: 4.### Human: And 3+3?### Assistant: 6.</s>"
        ),
        "system_2turn": (
            "<s>You are a concise assistant. ### Human: What is 2+2?### Assistant: 4.### Human: "
            "And 3+3?### Assistant: 6.</s>"
        ),
    },
)

FIREFLY = Template(
    name="firefly",
    summary="Firefly v1 multi-turn: <s>input1</s>target1</s>input2</s>target2</s>.",
    source="yangjianxin1/Firefly component/dataset.py SFTDataset @d1a4a29 (June 2023)",
    notes=(
        "No role markers and no system slot: a system prompt is merged into the first user "
        "message. Each answer and its EOS are trained; the user's EOS is not."
    )
    + _NO_TOOLS,
    bos_token="<s>",
    eos_token="</s>",
    prefix="{bos}",
    user_format="{content}{eos}",
    golden={"no_system_2turn": "<s>What is 2+2?</s>4.</s>And 3+3?</s>6.</s>"},
)

VICUNA = Template(
    name="vicuna",
    summary="Vicuna v1.1 (FastChat): 'USER: ... ASSISTANT: ...</s>'.",
    source="lm-sys/FastChat conversation.py vicuna_v1.1 @0e6d3e4 (ADD_COLON_TWO)",
    notes=(
        "BOS is prepended, as FastChat's train.py tokenizes with special tokens. The "
        "generation prompt ends with 'ASSISTANT:'; the answer (with its leading space) and "
        "EOS are trained. An explicit empty system message omits the system text."
    )
    + _NO_TOOLS,
    bos_token="<s>",
    eos_token="</s>",
    prefix="{bos}",
    system_format="{system} ",
    default_system=(
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    ),
    user_format="USER: {content} ",
    assistant_header="ASSISTANT:",
    assistant_format=" {content}",
    golden={
        "system_2turn": (
            "<s>You are a concise assistant. USER: What is 2+2? ASSISTANT: 4.</s>USER: And 3+3? "
            "ASSISTANT: 6.</s>"
        ),
    },
)

CHATML = Template(
    name="chatml",
    summary="ChatML as used by Qwen2: <|im_start|>role\\n...<|im_end|>\\n.",
    source="HF Qwen/Qwen2-*-Instruct chat_template; QwenLM/Qwen2 examples/sft/finetune.py",
    notes=(
        "Qwen2's default system prompt 'You are a helpful assistant.' is inserted when the "
        "conversation has none (an explicit empty system message omits it). The '\\n' after "
        "each <|im_end|> is part of the prompt, not trained. Tool results render as role "
        "'tool'. No BOS."
        " Assistant tool calls follow the content, one JSON object per line ('arguments' "
        "as an object); tool schemas ('tools') are not placed in the prompt."
    ),
    bos_token="",
    eos_token="<|im_end|>",
    system_format="<|im_start|>system\n{system}<|im_end|>\n",
    default_system="You are a helpful assistant.",
    user_format="<|im_start|>user\n{content}<|im_end|>\n",
    assistant_header="<|im_start|>assistant\n",
    end_of_turn="<|im_end|>",
    after_turn="\n",
    tool_format="<|im_start|>tool\n{content}<|im_end|>\n",
    requires_alternation=False,
    extra_stop_strings=("<|endoftext|>",),
    golden={
        "system_2turn": (
            "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n<|im_start|>user\n"
            "What is 2+2?<|im_end|>\n<|im_start|>assistant\n4.<|im_end|>\n<|im_start|>user\n"
            "And 3+3?<|im_end|>\n<|im_start|>assistant\n6.<|im_end|>\n"
        ),
    },
)

LLAMA3 = Template(
    name="llama3",
    summary="Meta Llama-3 Instruct: header ids and <|eot_id|>.",
    source="meta-llama/llama3 tokenizer.py ChatFormat @a0940f9; HF Llama-3 chat_template",
    notes=(
        "BOS '<|begin_of_text|>' always starts the text (Meta ChatFormat and the HF template; "
        "Firefly's variant emits it only with a system message). Contents are stripped. No "
        "default system prompt. Tool results render with role header 'tool'."
        " Assistant tool calls follow the content, one JSON object per line ('arguments' "
        "as an object); tool schemas ('tools') are not placed in the prompt."
    ),
    bos_token="<|begin_of_text|>",
    eos_token="<|eot_id|>",
    prefix="{bos}",
    system_format="<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>",
    user_format="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>",
    assistant_header="<|start_header_id|>assistant<|end_header_id|>\n\n",
    end_of_turn="<|eot_id|>",
    tool_format="<|start_header_id|>tool<|end_header_id|>\n\n{content}<|eot_id|>",
    strip_content=True,
    requires_alternation=False,
    extra_stop_strings=("<|end_of_text|>",),
    golden={
        "system_2turn": (
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a concise "
            "assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?"
            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n4.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n6.<|eot_id|>"
        ),
    },
)

MISTRAL = Template(
    name="mistral",
    summary="Mistral-7B-Instruct-v0.1 (original HF template): <s>[INST] ... [/INST]answer</s> .",
    source="mistralai/Mistral-7B-Instruct-v0.1 model card and original HF chat_template",
    notes=(
        "One BOS at the start; the answer follows '[/INST]' directly; EOS then one space "
        "(v0.1 template). The HF template rejects a system role; chosen: merge it into the "
        "first user message as 'system\\n\\nuser', as mistral-common's reference tokenizer does."
    )
    + _NO_TOOLS,
    bos_token="<s>",
    eos_token="</s>",
    prefix="{bos}",
    user_format="[INST] {content} [/INST]",
    after_turn=" ",
    golden={
        "no_system_2turn": "<s>[INST] What is 2+2? [/INST]4.</s> [INST] And 3+3? [/INST]6.</s> ",
    },
)

BUILTIN_TEMPLATES: tuple[Template, ...] = (
    ALPACA,
    LLAMA2,
    LINLY,
    LINLY_CHATFLOW,
    NOUS_HERMES,
    YAYI,
    STABLEBELUGA2,
    GUANACO,
    FIREFLY,
    VICUNA,
    CHATML,
    LLAMA3,
    MISTRAL,
)
