"""The search record: every candidate a search tried, its validation score and cost, and the winner.

One JSON file per dataset and cache folder, beside the heads: `<cache dir>/heads/search-<dataset>.json`.
It is rewritten atomically after every step, so an interrupted search resumes from it: a
candidate already fitted on the same features (same feature key) of the same images (same
dataset signature) is not fitted again. Only validation figures are recorded for candidates; the
test split is scored once, for the winner, and recorded under `winner`.

Layout: format, format_version, dataset, data_root, signature, budget_seconds, space, cost_model,
extractions (name -> cache path, feature key, rows computed, seconds), candidates (recipe name ->
recipe, rung, status done/failed/skipped, valid metrics, cost, cache, feature_key, note),
valid_images, selection (the rule), winner (recipe, valid and test metrics, head path), runs
(seconds of each invocation).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.atomic import write_text_atomically
from pipeline.errors import PipelineError

SEARCH_FORMAT = "bottleneck-search"
SEARCH_FORMAT_VERSION = 1
RECORD_PREFIX = "search-"
HEADS_FOLDER = "heads"
DONE, FAILED, SKIPPED = "done", "failed", "skipped"


def record_path(cache_dir: Path, dataset: str) -> Path:
    """Where the search record of `dataset` lives in `cache_dir`."""
    return Path(cache_dir) / HEADS_FOLDER / f"{RECORD_PREFIX}{dataset}.json"


def dataset_signature(index) -> str:
    """sha256 over every image's (relpath, content, split, label): a record applies only to the same images."""
    digest = hashlib.sha256()
    for record in sorted(index.records, key=lambda r: r.relpath):
        digest.update(f"{record.relpath}\0{record.sha256}\0{record.split}\0{record.label}\n".encode())
    digest.update("\0".join(index.class_names).encode())
    return digest.hexdigest()


def new_record(dataset: str, data_root: str, signature: str) -> dict:
    return {"format": SEARCH_FORMAT, "format_version": SEARCH_FORMAT_VERSION, "dataset": dataset,
            "data_root": data_root, "signature": signature, "extractions": {}, "candidates": {}, "runs": []}


def load_record(path: Path, signature: str | None = None) -> dict | None:
    """The record at `path`, or None when there is none, it is unreadable, or it is of other images."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or record.get("format") != SEARCH_FORMAT:
        return None
    if record.get("format_version", 0) > SEARCH_FORMAT_VERSION:
        raise PipelineError(f"{path} was written by a newer version of this tool; upgrade it, or delete the file "
                            "to search afresh")
    if signature is not None and record.get("signature") != signature:
        return None
    return record


def save_record(path: Path, record: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(path, json.dumps(record, indent=1, default=str))


def leaderboard_rows(record: dict) -> list[dict]:
    """Every candidate of `record`, best validation top-1 first (failed and skipped ones last)."""
    rows = [{"name": name, **entry} for name, entry in record.get("candidates", {}).items()]
    return sorted(rows, key=lambda row: (row.get("status") != DONE, -((row.get("valid") or {}).get("top1") or 0.0),
                                         row.get("order", 0)))


def records_for_cache(cache_path: Path) -> list[dict]:
    """The search records of `cache_path`'s folder that used this cache (for `report`), newest first."""
    cache_path = Path(cache_path).resolve()
    folder = cache_path.parent / HEADS_FOLDER
    found = []
    for path in sorted(folder.glob(f"{RECORD_PREFIX}*.json")) if folder.is_dir() else []:
        record = load_record(path)
        if record is None:
            continue
        caches = {str(Path(entry.get("cache_path", "")).resolve()) for entry in record.get("extractions", {}).values()}
        if str(cache_path) in caches:
            found.append({**record, "_path": str(path)})
    return sorted(found, key=lambda r: (r.get("runs") or [{}])[-1].get("finished", ""), reverse=True)


def report_sections(cache_path: Path) -> list[dict]:
    """What `report` and `report --html` show of the searches that used `cache_path`: per record its
    path, validation size, winner (recipe, valid, test, head), how it was chosen and every candidate."""
    sections = []
    for record in records_for_cache(cache_path):
        winner = record.get("winner") or {}
        sections.append({
            "record": record["_path"], "dataset": record.get("dataset"), "valid_images": record.get("valid_images"),
            "spent_seconds": record.get("spent_seconds"), "budget_seconds": record.get("budget_seconds"),
            "winner": winner.get("name"), "winner_valid": winner.get("valid"), "winner_test": winner.get("test"),
            "winner_head": winner.get("head"), "selection": winner.get("selection"),
            "candidates": [{"name": row["name"], "rung": row.get("rung"), "status": row.get("status"),
                            "valid_top1": (row.get("valid") or {}).get("top1"),
                            "valid_mean_per_class_accuracy": (row.get("valid") or {}).get("mean_per_class_accuracy"),
                            "note": row.get("note")} for row in leaderboard_rows(record)],
        })
    return sections
