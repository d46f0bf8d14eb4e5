"""The main job: data -> LoRA fine-tune -> evaluate -> merge -> answers, on the embedded
default model (SmolLM2-135M-Instruct) and the bundled data, on CPU, in minutes.

Every step is the same code path users call on their own data and models:
``data build`` on a packaged recipe, ``train`` on a packaged config (validation perplexity
before and after is part of every run), ``merge``, and generation through the template
saved with the model.
"""

from __future__ import annotations

import time
from pathlib import Path

from sftforge.resources import RESOURCES

QUICKSTART_RESOURCES = RESOURCES / "quickstart"
QUICKSTART_RECIPE = QUICKSTART_RESOURCES / "recipe.yaml"
QUICKSTART_TRAIN = QUICKSTART_RESOURCES / "train.yaml"

#: Questions the tuned model answers at the end. English only: SmolLM2-135M was pretrained
#: on English, and a few Chinese samples do not teach it Chinese.
DEMO_PROMPTS = (
    "Give three tips for staying healthy.",
    "What is the capital of France? Answer in one sentence.",
    "Rewrite in the passive voice: The committee approved the new budget.",
)


def run_quickstart(out: Path, *, overrides: list[str] | None = None) -> dict[str, Path]:
    """Run the whole job under ``out``; returns the paths it wrote."""
    from sftforge.configio import parse_overrides
    from sftforge.data.pipeline import build_dataset
    from sftforge.data.recipe import load_recipe
    from sftforge.train.commands import merge_run
    from sftforge.train.config import load_train_config
    from sftforge.train.run import ConfigChangedError, run_state, run_training

    started = time.perf_counter()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_dir, model_dir, merged_dir = out / "data", out / "model", out / "merged"

    _step(1, "build the dataset from the bundled data")
    recipe = load_recipe(QUICKSTART_RECIPE)
    build = build_dataset(recipe, output=data_dir)

    _step(2, "fine-tune SmolLM2-135M-Instruct with LoRA (CPU)")
    paths = {"data.path": str(data_dir), "output_dir": str(model_dir)}
    config = load_train_config(QUICKSTART_TRAIN, {**paths, **parse_overrides(overrides or [])})
    # A rerun trains again from the start: a finished model is replaced when the new one
    # finishes (never "resumed" for 0 steps); a killed run resumes unless its config changed.
    state = run_state(model_dir)
    if state == "finished":
        print(f"{model_dir} holds the previous quickstart model: training again from the start")
        result = run_training(config, overwrite=True)
    else:
        try:
            result = run_training(config)
        except ConfigChangedError:
            print(f"{model_dir} holds an unfinished run with other settings: starting it over")
            result = run_training(config, overwrite=True)

    _step(3, "merge the adapter into the base model")
    merged = merge_run(model_dir, merged_dir)

    _step(4, "answers from the tuned model, through the training template")
    show_answers(merged)

    before, after = result.metrics_before, result.metrics_after
    nan = float("nan")
    print(
        "\nvalidation perplexity (trained tokens only): "
        f"before {before.get('eval_ppl', nan):.2f} -> after {after.get('eval_ppl', nan):.2f}"
    )
    print(f"done in {time.perf_counter() - started:.0f} s. Written:")
    paths = {
        "dataset": data_dir,
        "data report": build.report or data_dir,
        "model (LoRA adapter)": model_dir,
        "supervision audit": model_dir / "audit.json",
        "loss curve": model_dir / "loss.png",
        "merged model": merged,
    }
    for name, path in paths.items():
        print(f"  {name:22s} {path}")
    return paths


def show_answers(model_dir: Path, prompts: tuple[str, ...] = DEMO_PROMPTS) -> None:
    from sftforge.infer.generate import Sampling, generate
    from sftforge.models.load import load_causal_lm
    from sftforge.templates import load_template
    from sftforge.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    template = load_template(model_dir / "template.json")
    model = load_causal_lm(model_dir)
    model.eval()
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    sampling = Sampling(max_new_tokens=96, repetition_penalty=1.1)
    for prompt, gen in zip(
        prompts, generate(model, tokenizer, template, conversations, sampling), strict=True
    ):
        print(f"\n> {prompt}\n{gen.text}\n  [{gen.new_tokens} tokens, {gen.finish_reason}]")


def _step(n: int, what: str) -> None:
    print(f"\n=== {n}. {what} ===", flush=True)
