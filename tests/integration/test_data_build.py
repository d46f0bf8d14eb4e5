"""`sftforge data build` end to end on in-repo slices of every shared format, with planted
duplicates, bad records and eval contamination: all caught with reasons, counts reconcile,
outputs load with `datasets`, the report renders its plots."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from sftforge.data.pipeline import build_dataset
from sftforge.data.recipe import load_recipe

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DATA = ASSETS / "data"
ANSWER = (
    "Photosynthesis is the process by which green plants, algae and some bacteria turn "
    "light energy, water and carbon dioxide into glucose and oxygen. It happens in the "
    "chloroplasts, where chlorophyll absorbs mostly blue and red light."
)
CONTAMINATED = (
    "Which of the following represents an accurate statement concerning arthropods? "
    "They possess an exoskeleton composed primarily of peptidoglycan."
)


def alpaca(instruction: str, output: str) -> dict:
    return {"instruction": instruction, "input": "", "output": output}


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    rows = [
        alpaca("Explain photosynthesis.", ANSWER),  # the original
        alpaca("Explain  photosynthesis. ", ANSWER.upper()),  # exact after normalisation
        alpaca("Explain photosynthesis.", ANSWER.replace("mostly", "mainly")),  # near duplicate
        alpaca(CONTAMINATED, "The answer is B."),  # an MMLU dev question, copied
        alpaca("Name a prime number larger than 10.", "Eleven is a prime number."),
    ]
    path = tmp_path_factory.mktemp("planted") / "planted.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def write_recipe(tmp_path: Path, planted: Path, **extra) -> Path:
    recipe = {
        "name": "slices",
        "seed": 3,
        "tokenizer": "smollm2",
        "sources": [
            {
                "name": "alpaca_en",
                "path": str(DATA / "alpaca/alpaca_en_demo.json"),
                "language": "en",
            },
            {
                "name": "alpaca_zh",
                "path": str(DATA / "alpaca/alpaca_zh_demo.json"),
                "language": "zh",
            },
            {
                "name": "identity",
                "path": str(DATA / "alpaca/identity.json"),
                "language": ["en", "zh"],
            },
            {"name": "oaast", "path": str(DATA / "alpaca/oaast_sft_zh.json"), "language": "zh"},
            {"name": "sharegpt", "path": str(DATA / "sharegpt/dummy_conversation.json")},
            {"name": "glaive", "path": str(DATA / "sharegpt/glaive_toolcall_en_demo.json")},
            {"name": "kto", "path": str(DATA / "openai/kto_en_demo.json"), "filter_label": True},
            {"name": "v1", "path": str(DATA / "openai/v1_sft_demo.jsonl")},
            {
                "name": "elle",
                "path": str(DATA / "openai/generative-ai-for-beginners/training-data.jsonl"),
            },
            {"name": "minicpm", "path": str(DATA / "openai/minicpm/AdvertiseGenChatML/train.json")},
            {"name": "firefly", "path": str(DATA / "firefly/dummy_data.jsonl"), "language": "zh"},
            {"name": "bad", "path": str(DATA / "bad_records.jsonl")},
            {"name": "planted", "path": str(planted), "language": "en"},
            {"name": "c4", "path": str(DATA / "pretrain/c4_demo.jsonl"), "replay": True},
            {
                "name": "zh_text",
                "path": str(DATA / "pretrain/dummy_pretrain.jsonl"),
                "replay": True,
            },
        ],
        "clean": ["unicode", "whitespace"],
        "filters": [{"length": {"min_chars": 2}}],
        "dedup": {
            "exact": True,
            "near": {"threshold": 0.7},
            "decontaminate": {"eval": [str(ASSETS / "eval")]},
        },
        "split": {"val_ratio": 0.2},
        **extra,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, planted):
    tmp = tmp_path_factory.mktemp("build")
    recipe = load_recipe(write_recipe(tmp, planted))
    return build_dataset(recipe, output=tmp / "out", progress=False, log=lambda _: None)


def rejects(result) -> list[dict]:
    path = result.out_dir / "rejects.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_outputs_exist_and_load_with_datasets(built):
    import datasets

    out = built.out_dir
    for name in ("train.jsonl", "train.parquet", "validation.jsonl", "validation.parquet",
                 "manifest.json", "report.html", "rejects.jsonl"):  # fmt: skip
        assert (out / name).is_file(), name
    js = datasets.load_dataset("json", data_files={"train": str(out / "train.jsonl")})["train"]
    pq = datasets.load_dataset("parquet", data_files={"train": str(out / "train.parquet")})["train"]
    assert len(js) == len(pq) == built.counts["train"] > 0
    assert js[0]["messages"][0]["role"] in ("system", "user", "assistant")
    assert set(js["source"]) >= {"alpaca_en", "alpaca_zh", "sharegpt", "firefly", "c4"}


def test_counts_reconcile_per_stage_and_overall(built):
    stages = built.manifest["stages"]
    for name, c in stages.items():
        assert c["seen"] == c["kept"] + sum(c["rejected"].values()), name
    total_out = built.counts["train"] + built.counts["validation"]
    assert built.manifest["records_read"] == total_out + built.manifest["records_rejected"]
    assert len(rejects(built)) == built.manifest["records_rejected"]


def test_planted_duplicates_bad_records_and_contamination_are_caught(built, planted):
    by_reason: dict[str, list[dict]] = {}
    for r in rejects(built):
        by_reason.setdefault(r["reason"], []).append(r)
    original = f"{planted}:1"
    exact = [r for r in by_reason["exact_duplicate"] if r["where"].startswith(str(planted))]
    assert [r["duplicate_of"].split(" ")[0] for r in exact] == [original]
    near = [r for r in by_reason["near_duplicate"] if r["where"].startswith(str(planted))]
    assert [r["duplicate_of"].split(" ")[0] for r in near] == [original]
    contaminated = by_reason["eval_contamination"]
    assert any(r["where"].startswith(f"{planted}:4") for r in contaminated)
    assert "college_biology_dev.csv" in contaminated[0]["duplicate_of"]
    bad = [r for r in rejects(built) if r["where"].startswith(str(DATA / "bad_records.jsonl"))]
    reasons = {r["reason"] for r in bad}
    assert {"invalid_json", "wrong_type", "missing_field", "empty_turn", "bad_role_order",
            "invalid_utf8", "nul_byte", "field_too_long", "unknown_role"} <= reasons  # fmt: skip
    assert all(":" in r["where"] for r in bad)
    assert by_reason["label_filtered"]  # KTO rows with label false


def test_manifest_records_inputs_recipe_seed_and_versions(built):
    m = built.manifest
    assert m["seed"] == 3 and m["recipe"]["name"] == "slices"
    assert all(len(v["sha256"]) == 64 for v in m["inputs"].values())
    assert {"datasets", "pyarrow", "python"} <= set(m["versions"])
    assert set(m["outputs"]) == {"train.jsonl", "train.parquet", "validation.jsonl",
                                 "validation.parquet"}  # fmt: skip
    assert m["split"] and all(v["val"] >= 1 for k, v in m["split"].items() if v["train"] > 1)


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img" and dict(attrs).get("src", "").startswith("data:image/png;base64,"):
            self.images += 1


def test_report_has_the_plots_and_duplicate_clusters(built):
    html = (built.out_dir / "report.html").read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(html)
    assert parser.images >= 6  # source mix, lengths, turns, languages, stages, drop reasons
    assert "Duplicate clusters" in html and "exact_dedup" in html and "near_dedup" in html
    assert "eval_contamination" in html


def test_build_is_deterministic_and_parallel_matches_serial(tmp_path, planted, built):
    recipe = load_recipe(write_recipe(tmp_path, planted, num_proc=2))
    again = build_dataset(recipe, output=tmp_path / "out2", progress=False, log=lambda _: None)
    a = (built.out_dir / "train.jsonl").read_text(encoding="utf-8")
    b = (again.out_dir / "train.jsonl").read_text(encoding="utf-8")
    assert a == b
    assert again.manifest["stages"] == built.manifest["stages"]


def test_parallel_build_with_prepared_records_matches_serial(tmp_path, planted):
    """Without decontamination the workers parse JSON Lines and prepare the records for
    de-duplication (``build_worker.py``): the output, counts and rejects equal the serial
    build's."""
    results = {}
    for procs in (1, 2):
        folder = tmp_path / f"p{procs}"
        folder.mkdir()
        dedup = {"exact": True, "near": {"threshold": 0.7}}
        recipe = load_recipe(write_recipe(folder, planted, num_proc=procs, dedup=dedup))
        results[procs] = build_dataset(
            recipe, output=folder / "out", progress=False, log=lambda _: None
        )
    serial, parallel = results[1], results[2]
    for name in ("train.jsonl", "validation.jsonl"):
        a = (serial.out_dir / name).read_bytes()
        assert a and a == (parallel.out_dir / name).read_bytes(), name
    assert parallel.manifest["stages"] == serial.manifest["stages"]
    assert parallel.manifest["stages"]["exact_dedup"]["rejected"]
    # statistics: token lengths counted by the pool's workers equal the main process's
    assert parallel.manifest["stats"] == serial.manifest["stats"]
    assert "length_tokens" in next(iter(parallel.manifest["stats"].values()))

    def key(r: dict) -> tuple:
        return (r["where"], r["stage"], r["reason"])

    assert sorted(rejects(parallel), key=key) == sorted(rejects(serial), key=key)


def test_diversity_selection_keeps_turn_codes_of_the_chosen_records(tmp_path, planted):
    """Selection narrows each pool to the chosen records (the shipped
    diverse_multiturn.yaml failed with a zip() length error before)."""
    recipe = load_recipe(
        write_recipe(
            tmp_path,
            planted,
            select={"n": 3, "method": "kcenter", "features": "hashing"},
            mix={"allow_shortfall": True},
        )
    )
    result = build_dataset(recipe, output=tmp_path / "out", progress=False, log=lambda _: None)
    m = json.loads((result.out_dir / "manifest.json").read_text())
    assert m["stages"]["select"]["kept"] > 0
    assert m["selection"] and all(v["selected"] <= 3 for v in m["selection"].values())
    # every selected record is in the output exactly as far as the mix drew it
    assert m["stages"]["select"]["kept"] == sum(v["selected"] for v in m["selection"].values())
