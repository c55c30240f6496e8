"""Deterministic sharding of one extraction across machines: `extract --shard I/N`, then `merge`.

Shards are dealt whole forward batches, round robin: with the dataset's distinct contents
numbered in index order (`pipeline.cache.slots.content_ordinals`) and batch size B, the image numbered
`ordinal` belongs to shard `(ordinal // B) % N`. So every shard job computes exactly the batches a
single run computes, slot for slot, and the merged features are bitwise those of a single run
(same machine type, libraries and `--batch-size`; see `pipeline.cache.slots` for why slots matter). The
assignment depends only on the dataset index and B, never on the machine: every job agrees on it
without talking to the others, identical files share an ordinal and so a shard, and re-running a
shard after a crash picks exactly the same images.

Every shard job reads and hashes the whole dataset (so splits, class names, notes and ordinals
are those of the whole dataset) and then extracts only its own images into a shard cache,
`<dataset>-<backbone>-<layer>-<key>.shard-I-of-N.h5`. Besides the usual contents, a shard cache
records where each of its images and failures sits in the full dataset index (`shard/` group),
and a digest of that full index, so `pipeline.cache.merge` can put the shards back together into
exactly the cache a single machine would have written, and refuse shards that saw different
versions of the dataset.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.cache.format import CACHE_SUFFIX, SHARD_NAME_PATTERN
from pipeline.cache.slots import content_ordinals
from pipeline.data.dataset import DatasetIndex
from pipeline.errors import UsageError

#: Position recorded for failures that are not images of the index (files that could not be hashed).
NOT_IN_INDEX = -1


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(f"shard {self.index}/{self.count} does not exist: use I/N with 0 <= I < N, "
                             "e.g. 0/4 ... 3/4 for four machines")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse "I/N" (e.g. "2/8"); ValueError explains the expected form."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if match is None:
            raise UsageError(f"--shard expects I/N (this job's shard I of N, counting from 0), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def owns(self, ordinal: int, batch_size: int) -> bool:
        """True when the image numbered `ordinal` (see `pipeline.cache.slots`) belongs to this shard."""
        return shard_of(ordinal, batch_size, self.count) == self.index

    def suffix(self) -> str:
        """The part of a shard cache's file name that names the shard, e.g. ".shard-02-of-08"."""
        width = len(str(self.count - 1))
        return f".shard-{self.index:0{width}d}-of-{self.count:0{width}d}"

    def to_text(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(ordinal: int, batch_size: int, count: int) -> int:
    """The shard (0..count-1) of the image numbered `ordinal`: its forward batch, dealt round robin."""
    return (ordinal // batch_size) % count


def shard_cache_path(cache_path: Path, shard: Shard) -> Path:
    """Where shard `shard` of the cache `cache_path` is written (same folder, shard in the name)."""
    return cache_path.with_name(cache_path.name[: -len(CACHE_SUFFIX)] + shard.suffix() + CACHE_SUFFIX)


def merged_cache_name(shard_file_name: str) -> str:
    """The file name of the merged cache of a shard cache's file name."""
    stem = shard_file_name[: -len(CACHE_SUFFIX)] if shard_file_name.endswith(CACHE_SUFFIX) else shard_file_name
    return SHARD_NAME_PATTERN.sub("", stem) + CACHE_SUFFIX


def index_digest(index: DatasetIndex) -> str:
    """sha256 of everything in a full dataset index that ends up in a cache's dataset view.

    File sizes, modification times and the dataset root are left out: they belong to one copy
    of the files, and each image's own values travel with the shard that extracted it.
    """
    content = {
        "layout": index.layout,
        "classes": list(index.class_names),
        "targets": {task: list(classes) for task, classes in index.extra_targets.items()},
        "notes": list(index.notes),
        "records": [[r.relpath, r.label, r.split, r.sha256, list(r.extra_labels)] for r in index.records],
        "skipped": [[s.relpath, s.reason] for s in index.skipped],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ShardView:
    """A full dataset index cut down to one shard's images, remembering where each one came from.

    `index` keeps only the shard's records (and every file that could not be hashed);
    `position_of` maps a kept record's relpath to its position in the full index; `ordinals` are
    the full index's content ordinals, so the shard's images keep a single run's batch slots.
    """

    shard: Shard
    index: DatasetIndex
    position_of: dict
    ordinals: dict
    batch_size: int
    total_records: int
    digest: str

    def attributes(self) -> dict:
        """What a shard cache records about its shard (JSON-able; stored with the dataset attributes)."""
        return {"index": self.shard.index, "count": self.shard.count, "records": self.total_records,
                "batch_size": self.batch_size, "index_digest": self.digest}

    def positions(self, relpaths, failures) -> dict:
        """The `shard` columns of a cache view: full-index positions of `relpaths` and `failures`."""
        skipped = {s.relpath for s in self.index.skipped}
        return {
            "image_position": [self.position_of[relpath] for relpath in relpaths],
            "failure_position": [NOT_IN_INDEX if relpath in skipped else self.position_of[relpath]
                                 for relpath, _ in failures],
        }


def cut_index(index: DatasetIndex, shard: Shard, batch_size: int) -> ShardView:
    """The part of a hashed, split `index` that `shard` extracts with forward batches of `batch_size`."""
    ordinals = content_ordinals(record.sha256 for record in index.records)
    kept, position_of = [], {}
    for position, record in enumerate(index.records):
        if shard.owns(ordinals[record.sha256], batch_size):
            kept.append(record)
            position_of[record.relpath] = position
    cut = index.with_records(kept)
    return ShardView(shard=shard, index=cut, position_of=position_of, ordinals=ordinals, batch_size=batch_size,
                     total_records=len(index.records), digest=index_digest(index))
