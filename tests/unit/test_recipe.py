"""Recipes: every shipped recipe loads and validates; bad keys are named by their path."""

from __future__ import annotations

from pathlib import Path

import pytest

from sftforge.data.recipe import RecipeError, load_recipe, recipe_from_dict

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "data").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_recipes_load_and_their_blocks_build(path):
    from sftforge.data.filters import block_params

    recipe = load_recipe(path)
    assert recipe.sources and recipe.name == path.stem
    for spec in (*recipe.clean, *recipe.filters):
        valid = block_params(spec.name)  # unknown block names raise here
        assert set(spec.params) <= set(valid), (spec.name, spec.params)
    for source in recipe.sources:
        assert "shared/data" in str(recipe.resolve(source.path))


def test_shipped_recipes_cover_every_format():
    paths = {str(s.path) for p in CONFIGS for s in load_recipe(p).sources}
    for needle in ("alpaca_en_demo", "alpaca_zh_demo", "dummy_conversation", "dummy_data.jsonl",
                   "c4_demo", "kto_en_demo", "v1_sft_demo", "glaive_toolcall"):  # fmt: skip
        assert any(needle in p for p in paths), needle


def base(**extra) -> dict:
    return {"name": "r", "sources": [{"path": "a.json", "weight": 1.0}], **extra}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (base(sedd=1), "sedd: unknown key; did you mean 'seed'?"),
        (
            {"name": "r", "sources": [{"path": "a.json", "wieght": 1}]},
            "sources[0].wieght: unknown key; did you mean 'weight'?",
        ),
        (base(mix={"totl": 5}), "mix.totl: unknown key"),
        (base(seed="x"), "seed: expected an integer"),
        (base(mix={"replay_ratio": 1.5}), "mix.replay_ratio: must be between 0 and 1"),
        (
            {"name": "r", "sources": [{"path": "a", "weight": 1, "count": 2}]},
            "either weight or count",
        ),
        ({"name": "r"}, "sources: a non-empty list"),
        (base(filters=[{"length": 3}]), "filters[0].length: parameters must be a mapping"),
    ],
)
def test_bad_recipes_name_the_key(data, message):
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(data)
    assert message in str(info.value)


def test_relative_paths_resolve_against_the_recipe_folder(tmp_path):
    (tmp_path / "r.yaml").write_text("sources:\n  - {path: data/x.jsonl}\n")
    recipe = load_recipe(tmp_path / "r.yaml", {"seed": 5})
    assert recipe.resolve(recipe.sources[0].path) == (tmp_path / "data" / "x.jsonl").resolve()
    assert recipe.seed == 5 and recipe.sources[0].name == "x"
