"""The safety half of ``sftforge data build``: where a build may write, what it leaves
behind, the checks that stop a build from silently losing a source or a requested share,
and the manifest written last.

* :func:`check_output_folder`: the output is not an input's folder, and is empty, new or
  a dataset (a build replaces the whole folder);
* :func:`clear_leftovers`: temporary siblings of a build that was killed (called with the
  output's lock held, so no live build owns them);
* :func:`check_pools` and :func:`check_mix`: a source with no records left, or a mix
  target that cannot be met, fails the build unless ``mix.allow_shortfall: true`` (then
  it is a warning in the manifest and the summary);
* :func:`build_manifest` and :func:`write_manifest`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sftforge.data.block import RejectSink
from sftforge.data.manifest import MANIFEST_FILE, SPLIT_FILES, describe_outputs
from sftforge.data.recipe import Recipe
from sftforge.errors import SftForgeError
from sftforge.fsutil import TMP_PREFIX, OutputPathError, atomic_write_text

#: What a build puts in its folder; anything else there is not ours to replace.
BUILD_FILES = (*SPLIT_FILES, MANIFEST_FILE, "report.html", "rejects.jsonl", ".work")
#: Stage reasons that are sampling, not quality: counted, never written to rejects.jsonl.
SAMPLING_REASONS = ("not_sampled",)


class BuildShortfallError(SftForgeError, ValueError):
    """A source gave no records, or the mix could not meet what the recipe asks for."""


def write_error(out_dir: Path, exc: OSError) -> OutputPathError:
    from sftforge.fsutil import _write_error

    err = _write_error(out_dir, exc)
    return OutputPathError(f"{err}; the previous dataset (if any) is unchanged")


def check_output_folder(recipe: Recipe, out_dir: Path) -> None:
    """Refuse an output that is a file, holds an input, or holds files a build did not
    write (they would be lost when the new dataset replaces the folder)."""
    from sftforge.fsutil import refuse_input_as_output

    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"{out_dir}: is a file; give a folder for the dataset")
    for parent in out_dir.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(
                    f"{out_dir}: cannot write (its parent {parent} is a file, not a folder)"
                )
            break
    inputs = [recipe.resolve(s.path) for s in recipe.sources]
    refuse_input_as_output(inputs, [out_dir])
    if not out_dir.is_dir():
        return
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in BUILD_FILES)
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise OutputPathError(
            f"{out_dir}: holds files a dataset build did not write ({shown}); a build "
            "replaces the whole folder, so choose a new or empty folder (or move them)"
        )


def clear_leftovers(out_dir: Path, log: Callable[[str], None]) -> None:
    """Remove temporary siblings of ``out_dir`` left by a killed build. Only call it with
    the output's lock held: then no live build of this output owns them."""
    prefix = f"{TMP_PREFIX}{out_dir.name}-"
    parent = out_dir.parent
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        if not entry.name.startswith(prefix):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        log(f"note: removed {entry}, left by a build of {out_dir} that did not finish")


def _top_reasons(sink: RejectSink, n: int = 4) -> str:
    reasons: Counter[str] = Counter()
    for counts in sink.stages.values():
        reasons.update(counts.rejected)
    for r in SAMPLING_REASONS:
        reasons.pop(r, None)
    if not reasons:
        return "nothing was rejected"
    return "rejected in this build: " + ", ".join(f"{r} {k}" for r, k in reasons.most_common(n))


def _shortfall(recipe: Recipe, sink: RejectSink, problems: Sequence[str], what: str) -> None:
    if not problems:
        return
    if recipe.mix.allow_shortfall:
        sink.warnings.extend(problems)
        return
    raise BuildShortfallError(
        f"{what}:\n  "
        + "\n  ".join(problems)
        + "\nFix the sources or the recipe, or set mix.allow_shortfall: true to build "
        "anyway (the shortfall is then recorded as a warning in manifest.json)."
    )


def check_pools(recipe: Recipe, per_source: Sequence[int], sink: RejectSink) -> None:
    """Every source must give records that pass reading, cleaning and filtering
    (``per_source``: how many each gave). De-duplication against other sources may still
    leave a source with none: that is not a shortfall."""
    problems = [
        f"source {s.name!r} ({recipe.resolve(s.path)}): no records passed reading, "
        f"cleaning and filtering ({_top_reasons(sink)})"
        for s, k in zip(recipe.sources, per_source, strict=True)
        if k == 0
    ]
    _shortfall(recipe, sink, problems, "a source gave no records")


def check_mix(recipe: Recipe, report: Any, sink: RejectSink) -> None:
    """What the mix could not meet (a share, a count, a total) fails the build."""
    _shortfall(recipe, sink, list(report.warnings), "the mix cannot meet the recipe")


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(
        out_dir / MANIFEST_FILE, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    )


def clusters_of(blocks: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for block in blocks:
        clusters = getattr(block, "clusters", None)
        if clusters is None:
            continue
        for c in clusters.to_list() if hasattr(clusters, "to_list") else list(clusters):
            item = c if isinstance(c, dict) else c.to_dict()
            out.append({"stage": getattr(block, "name", ""), **item})
    return out


def build_manifest(
    recipe: Recipe,
    out_dir: Path,
    sink: RejectSink,
    stats: Any,
    mix_report: Any,
    split_counts: dict,
    selection: dict,
    blocks: Sequence[Any],
    started: float,
) -> dict[str, Any]:
    """The manifest: inputs, recipe, counts per stage, mix, split, statistics, warnings,
    and every output file's size, SHA-256 and rows (what ``verify_dataset`` checks)."""
    from sftforge.data.writer import sha256_file, versions

    stages = sink.to_dict()
    read = stages.get("read", {"seen": 0})
    not_sampled = sum(c["rejected"].get(r, 0) for c in stages.values() for r in SAMPLING_REASONS)
    manifest: dict[str, Any] = {
        "name": recipe.name,
        "seed": recipe.seed,
        "created_unix": int(started),
        "seconds": round(time.time() - started, 2),
        "recipe": recipe.to_dict(),
        "inputs": {
            s.name: {
                "path": str(recipe.resolve(s.path)),
                "sha256": sha256_file(recipe.resolve(s.path)),
            }
            for s in recipe.sources
        },
        "stages": stages,
        "records_read": read.get("seen", 0),
        # quality rejects, each in rejects.jsonl; sampling is counted apart
        "records_rejected": sink.total_rejected() - not_sampled,
        "records_not_sampled": not_sampled,
        "mix": mix_report.to_dict() if hasattr(mix_report, "to_dict") else {},
        "split": split_counts,
        "selection": selection,
        "stats": stats.to_dict(),
        "warnings": list(sink.warnings),
        "outputs": describe_outputs(out_dir),
        "versions": versions(),
    }
    if "window" in stages:
        w = stages["window"]
        manifest["windows"] = {
            "documents": w["seen"],
            "windows": w["kept"],
            "windows_added": w.get("added", 0),
        }
    for block in blocks:
        loaded = getattr(block, "loaded", None)
        if loaded is not None:
            manifest["decontamination"] = {
                "eval_files": dict(loaded),
                "questions": len(block.questions),
                "skipped_questions": block.skipped_questions,
            }
    return manifest
