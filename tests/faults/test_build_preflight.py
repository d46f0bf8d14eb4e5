"""A failure in a build worker stops ``data build`` with that worker's error, promptly.

Two defences. Preflight: a recipe whose blocks, block parameters, selection settings or
paths are wrong is refused when it is loaded (or before the build reads anything),
naming the recipe field, so no worker is started for it. No hang: a worker whose setup
fails, whose task raises, or which is killed by a signal ends the build with a one-line
error (``multiprocessing.Pool`` respawned such workers forever, and the build hung).

The builds run in a subprocess with a timeout: a hang fails the test instead of the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sftforge.cli import main
from sftforge.data.recipe import RecipeError, load_recipe

SRC = Path(__file__).resolve().parents[2] / "src"
TIMEOUT = 90  # seconds: a build of 60 records with two spawned workers takes a few

# A script that registers a test-only filter, then runs the CLI. Spawned workers run the
# main script's top level too, so the filter exists in them as well.
BOOM = """
import multiprocessing, os, signal, sys
from sftforge.data import filters
from sftforge.data.block import Filter

class Boom(Filter):
    name = "boom"
    def __init__(self, mode="init"):
        self.mode = mode
        if mode == "init" and multiprocessing.parent_process() is not None:
            raise RuntimeError("boom in the worker's setup")
    def check(self, conversation):
        if self.mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.mode == "raise":
            raise RuntimeError("boom while filtering")
        return None

filters.BLOCKS["boom"] = Boom
filters.FILTERS["boom"] = Boom

if __name__ == "__main__":
    from sftforge.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def write_data(folder: Path, n: int = 60) -> Path:
    path = folder / "data.jsonl"
    rows = [
        {"instruction": f"Question number {i}?", "input": "", "output": f"Answer {i} here."}
        for i in range(n)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def write_recipe(folder: Path, **extra) -> Path:
    data = write_data(folder)
    recipe = {
        "name": "preflight",
        "tokenizer": None,
        "num_proc": 2,
        "output": str(folder / "out"),
        "sources": [{"name": "data", "path": str(data)}],
        "mix": {"allow_shortfall": True},
        **extra,
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def run_cli(
    args: list[str], script: Path | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, str(script)] if script else [sys.executable, "-m", "sftforge"]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd + args, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`sftforge {' '.join(args)}` hung for {TIMEOUT}s instead of failing")
    return done, time.monotonic() - started


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.startswith("sftforge: error:"), done.stderr[-3000:]
    return done.stderr


# -- preflight: refused at recipe load, before any worker starts ---------------------------------
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (
            ["length", "placeholder", "langauge"],
            "filters[2].langauge: unknown filter 'langauge' (did you mean 'language'?)",
        ),
        (
            [{"length": {"max_char": 400}}],
            "filters[0].length.max_char: unknown parameter (did you mean 'max_chars'?)",
        ),
        (
            [{"repetition": {"max_ratio": "lots"}}],
            "filters[0].repetition: max_ratio must be a number",
        ),
    ],
    ids=["misspelled filter", "unknown parameter", "bad parameter value"],
)
def test_bad_blocks_with_two_workers_fail_fast_naming_the_field(tmp_path, filters, expected):
    recipe = write_recipe(tmp_path, filters=filters)
    done, took = run_cli(["data", "build", str(recipe)])
    err = one_line_error(done)
    assert expected in err
    assert took < TIMEOUT / 2
    assert not (tmp_path / "out").exists()


def test_unknown_cleaning_block_is_named_at_load(tmp_path):
    recipe = write_recipe(tmp_path, clean=["unicode", "whitespce"])
    with pytest.raises(RecipeError, match=r"clean\[1\]\.whitespce: unknown cleaning block "
                       r"'whitespce' \(did you mean 'whitespace'\?\)"):  # fmt: skip
        load_recipe(recipe)


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        ({"n": 10, "features": "tfidf"}, "select.features: unknown features 'tfidf'"),
        (
            {"n": 10, "method": "kcentre"},
            "select.method: unknown method 'kcentre' (did you mean 'kcenter'?)",
        ),
    ],
)
def test_unknown_selection_settings_fail_at_load(tmp_path, capsys, select, expected):
    recipe = write_recipe(tmp_path, select=select, num_proc=1)
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe)
    assert expected in str(err.value)
    assert main(["data", "build", str(recipe)]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing was read or written


def test_unknown_dedup_parameter_fails_at_load(tmp_path):
    recipe = write_recipe(tmp_path, dedup={"near": {"treshold": 0.7}})
    with pytest.raises(RecipeError, match=r"dedup\.near\.treshold: unknown parameter"):
        load_recipe(recipe)


def test_missing_paths_are_named_before_the_build_reads_anything(tmp_path, capsys):
    from sftforge.data.pipeline import preflight

    recipe_path = write_recipe(tmp_path, dedup={"decontaminate": {"eval": "no_such_evals"}})
    recipe = load_recipe(recipe_path)
    with pytest.raises(RecipeError, match=r"dedup\.decontaminate\.eval: .*no_such_evals does not"):
        preflight(recipe)
    assert main(["data", "build", str(recipe_path)]) == 2
    err = capsys.readouterr().err
    assert "dedup.decontaminate.eval" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()

    (tmp_path / "data.jsonl").unlink()
    with pytest.raises(RecipeError, match=r"sources\[0\]\.path: .*data\.jsonl does not exist"):
        preflight(load_recipe(recipe_path))


def test_shipped_recipes_pass_preflight():
    from sftforge.data.pipeline import preflight

    configs = Path(__file__).resolve().parents[2] / "configs" / "data"
    for path in sorted(configs.glob("*.yaml")):
        recipe = load_recipe(path)
        if all(recipe.resolve(s.path).exists() for s in recipe.sources):
            preflight(recipe)  # raises if a shipped recipe is wrong


# -- no hang: a failing worker ends the build with its message ------------------------------------
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("init", "boom in the worker's setup"),
        ("raise", "boom while filtering"),
        ("kill", "a build worker process died"),
    ],
    ids=["setup raises", "task raises", "worker killed"],
)
@pytest.mark.parametrize("decontaminate", [False, True], ids=["prepared", "conversations"])
def test_failing_worker_ends_the_build_with_its_error(tmp_path, mode, expected, decontaminate):
    script = tmp_path / "build_with_boom.py"
    script.write_text(BOOM, encoding="utf-8")
    extra: dict = {"filters": [{"boom": {"mode": mode}}]}
    if decontaminate:  # the other worker path: conversations shipped both ways
        evals = tmp_path / "evals.jsonl"
        evals.write_text(json.dumps({"question": "What is the capital of Mars?"}) + "\n")
        extra["dedup"] = {"decontaminate": {"eval": str(evals)}}
    recipe = write_recipe(tmp_path, **extra)
    done, took = run_cli(["data", "build", str(recipe)], script=script)
    err = one_line_error(done)
    assert expected in err
    assert took < TIMEOUT / 2
    assert not (tmp_path / "out").exists()  # the failed build published nothing
