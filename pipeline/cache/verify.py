"""`cache verify`: structure, provenance and every row's digest, checked without trusting the file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from pipeline.cache.format import FIX_DAMAGED, CachedImages, first_line, open_cache_file, read_cache_info
from pipeline.cache.rows import READ_BLOCK_ROWS, non_finite_rows, read_row_addresses, row_digest
from pipeline.data.dataset import SPLITS, safe_relpath
from pipeline.data.views import view_address
from pipeline.errors import CacheError, DatasetError


def verify_cache(path: Path, check_rows: bool = True) -> list[str]:
    """Check structure, provenance and (optionally) every row's digest. Returns the problems found."""
    try:
        info = read_cache_info(path)
    except CacheError as error:
        return [str(error)]
    problems = []
    if info.spec.key() != info.key:
        problems.append("feature_key does not match feature_spec (provenance was altered)")
    images = info.images  # read_cache_info applied the structure and table rules (pipeline.cache.structure)
    bad_splits = set(images.split.tolist()) - set(SPLITS)
    if bad_splits:
        problems.append(f"unknown split names: {sorted(bad_splits)}")
    all_relpaths = images.relpath + tuple(p for p, _ in info.failures)
    escaping = [relpath for relpath in all_relpaths if not _stays_inside(relpath)]
    if escaping:
        problems.append(f"{len(escaping)} image paths escape the dataset root (first: {escaping[0]!r}); "
                        "the cache was tampered with")
    try:
        with open_cache_file(path) as handle:
            problems.extend(_check_rows(handle, images, check_rows))
    except (KeyError, OSError, RuntimeError) as error:
        problems.append(f"the feature table cannot be read ({first_line(error)}); the file is damaged")
    return problems


def damaged_cache_error(path: Path, problems: list[str]) -> CacheError:
    """The error for a cache that failed `verify_cache`: the problems, then how to fix it."""
    fix = "" if any("`cache rm`" in problem for problem in problems) else f"\n{FIX_DAMAGED[0].upper()}{FIX_DAMAGED[1:]}"
    return CacheError(f"cache {path} failed verification:\n  " + "\n  ".join(problems) + fix)


def _stays_inside(relpath: str) -> bool:
    try:
        safe_relpath(relpath)
    except DatasetError:
        return False
    return True


def _check_rows(handle: h5py.File, images: CachedImages, check_digests: bool) -> list[str]:
    problems = []
    addresses = np.array(read_row_addresses(handle), dtype=object)
    if len(addresses) != handle["features"].shape[0]:
        problems.append("row_sha256 and features have different lengths")
    if len(set(addresses.tolist())) != len(addresses):
        problems.append("row_sha256 has duplicates")
    in_range = len(images) == 0 or (images.row.min() >= 0 and images.row.max() < len(addresses))
    if in_range and len(images) and not np.array_equal(addresses[images.row].astype(str), images.sha256):
        problems.append("images/sha256 disagrees with the rows it points to")
    if images.view_rows is not None:
        problems.extend(_check_view_rows(addresses, images))
    if check_digests:
        problems.extend(_check_digests(handle))
    return problems


def _check_view_rows(addresses: np.ndarray, images: CachedImages) -> list[str]:
    """Each image's view rows must hold its views, in order (view 0 = images/row)."""
    rows = images.view_rows
    if len(rows) != len(images) or (rows.size and (rows.min() < 0 or rows.max() >= len(addresses))):
        return ["images/view_rows does not match the images or points outside the features table"]
    expected = [[view_address(sha, view) for view in range(rows.shape[1])] for sha in images.sha256]
    if rows.size and (addresses[rows].tolist() != expected or not np.array_equal(rows[:, 0], images.row)):
        return ["images/view_rows disagrees with the views its rows hold"]
    return []


def _check_digests(handle: h5py.File) -> list[str]:
    features, digests = handle["features"], handle["row_digest"][()]
    if len(digests) != features.shape[0]:
        return ["row_digest and features have different lengths"]
    bad, non_finite = [], []
    for start in range(0, features.shape[0], READ_BLOCK_ROWS):
        block = features[start:start + READ_BLOCK_ROWS]
        bad.extend(start + i for i, row in enumerate(block) if row_digest(row) != int(digests[start + i]))
        non_finite.extend(start + i for i in non_finite_rows(block))
    problems = []
    if bad:
        problems.append(f"{len(bad)} feature rows do not match their digests (first: row {bad[0]}); "
                        "the file is corrupted")
    if non_finite:
        problems.append(f"{len(non_finite)} feature rows hold NaN or infinite values (first: row {non_finite[0]}); "
                        "heads cannot be fitted on them: extract again (in float32 if float16 overflowed)")
    return problems
