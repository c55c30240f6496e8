"""What one extraction of a search needs: its options, cache path and key, and the rows still missing.

Planning reads the weights resolution, the fingerprint memo and the existing caches only, so it
imports no TensorFlow once a backbone has been fingerprinted in the cache folder; it counts rows
the way `extract` finds them (the cache, its unfinished segments, sibling caches with the same
key, and for views the view-0 rows of the plain cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.cache.format import cache_file_name, read_cache_info, read_file_stamps
from pipeline.cache.segments import existing_rows
from pipeline.data.indexing import dataset_name_of
from pipeline.data.views import addresses_of
from pipeline.extract.options import ExtractOptions
from pipeline.extract.setup import resolve_setup
from pipeline.search.space import Extraction


@dataclass(frozen=True)
class ExtractionPlan:
    """One extraction's `extract` options, cache path and feature key, and how much is left to do."""

    extraction: Extraction
    options: ExtractOptions
    cache_path: Path
    feature_key: str
    missing: int  # rows still to compute
    complete: bool  # the cache file holds every row of every image: `extract` would change nothing


def plan_extraction(extraction: Extraction, data_dir: Path, cache_dir: Path, index) -> ExtractionPlan:
    """The plan of `extraction` for the images of `index` (the dataset at `data_dir`) in `cache_dir`."""
    options = ExtractOptions(backbone=extraction.backbone, input_size=extraction.input_size, views=extraction.views,
                             layer=extraction.layer)
    setup, _ = resolve_setup(options, cache_dir)
    spec = setup.feature_spec
    cache_path = Path(cache_dir) / cache_file_name(dataset_name_of(data_dir), spec)
    plain = spec.without_views().key() if spec.views is not None else None
    available = existing_rows(cache_path, spec.key(), plain)
    failed = _failed_relpaths(cache_path)
    missing = sum(address not in available for r in index.records if r.relpath not in failed
                  for address in addresses_of(r.sha256, spec.views))
    complete = not missing and cache_path.exists() and _lists_every_image(cache_path, index, failed)
    return ExtractionPlan(extraction, options, cache_path, spec.key(), missing, complete)


def known_stamps(record: dict | None) -> dict:
    """File stamps of a cache a search `record` names, so unchanged images are not hashed again."""
    for entry in (record or {}).get("extractions", {}).values():
        stamps = read_file_stamps(Path(entry.get("cache_path", "")))
        if stamps:
            return stamps
    return {}


def _failed_relpaths(cache_path: Path) -> set:
    """Images the cache lists as failures (undecodable): never missing rows."""
    if not cache_path.exists():
        return set()
    return {relpath for relpath, _ in read_cache_info(cache_path).failures}


def _lists_every_image(cache_path: Path, index, failed: set) -> bool:
    """Whether the cache lists exactly the index's images (so `extract` would change nothing)."""
    info = read_cache_info(cache_path)
    cached = {str(relpath): str(sha) for relpath, sha in zip(info.images.relpath, info.images.sha256)}
    wanted = {r.relpath: r.sha256 for r in index.records if r.relpath not in failed}
    return cached == wanted
