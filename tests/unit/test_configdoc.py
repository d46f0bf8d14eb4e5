"""docs/reference.md is generated from the typed configs and cannot drift from them."""

from __future__ import annotations

from pathlib import Path

from sftforge.configdoc import config_rows, field_docs, render_reference

ROOT = Path(__file__).resolve().parents[2]


def test_reference_page_matches_the_code():
    page = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert page == render_reference(), (
        "docs/reference.md is stale: run `python -m sftforge.configdoc > docs/reference.md`"
    )


def test_every_training_and_recipe_key_is_documented():
    from sftforge.data.recipe import BlockSpec, Recipe
    from sftforge.train.config import TrainConfig

    rows = config_rows(TrainConfig, skip=("base_dir",))
    rows += config_rows(Recipe, skip=("base_dir",), leaves=(BlockSpec,))
    undocumented = [key for key, _type, _default, doc in rows if not doc]
    assert not undocumented, f"add a #: comment above: {undocumented}"


def test_field_docs_reads_hash_colon_comments_and_trailing_comments():
    from dataclasses import dataclass

    @dataclass
    class Example:
        #: The first line,
        #: and the second.
        a: int = 1
        b: str = "x"  # trailing
        c: float = 0.0

    assert field_docs(Example) == {"a": "The first line, and the second.", "b": "trailing"}


def test_every_recipe_block_is_in_the_reference():
    from sftforge.data.filters import BLOCKS

    page = render_reference()
    for name in BLOCKS:
        assert f"### `{name}`" in page


def test_the_data_guide_recipe_is_valid(tmp_path):
    """The recipe walked through in docs/data.md parses with every key and block as
    written (its data paths are examples, so nothing is built)."""
    import re

    from sftforge.data.recipe import load_recipe

    guide = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(re.search(r"```yaml\n(.*?)```", guide, re.S).group(1))
    loaded = load_recipe(recipe)
    assert [s.name for s in loaded.sources] == ["alpaca_en", "chats", "support", "wiki"]
    assert [b.name for b in loaded.filters] == ["length", "refusal", "repetition", "language"]
