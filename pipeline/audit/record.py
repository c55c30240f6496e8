"""The audit record: what `audit` found, saved beside the cache's heads for `report` to show.

`<cache dir>/heads/<cache stem>/audit/audit.json` (JSON, written atomically): format, the cache's
feature key and `updated` stamp when it was audited, and the findings (`run.AuditResult.to_dict`).
A record whose stamp no longer matches the cache is stale: `read_record` says so instead of
returning findings about images that may have changed.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.atomic import write_text_atomically
from pipeline.cache.format import CacheInfo
from pipeline.heads.store import heads_dir_of

RECORD_FORMAT = "bottleneck-audit"
RECORD_FORMAT_VERSION = 1
AUDIT_SUBDIR = "audit"
RECORD_NAME = "audit.json"


def record_path(cache_path: Path) -> Path:
    """Where the audit record of the cache at `cache_path` lives."""
    return heads_dir_of(cache_path) / AUDIT_SUBDIR / RECORD_NAME


def write_record(info: CacheInfo, findings: dict) -> Path:
    """Save `findings` for the cache `info` describes; returns the record's path."""
    path = record_path(info.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": RECORD_FORMAT, "format_version": RECORD_FORMAT_VERSION, "feature_key": info.key,
                "cache_updated": info.updated, "images": len(info.images), **findings}
    return write_text_atomically(path, json.dumps(document))


def read_record(info: CacheInfo) -> tuple[dict | None, str | None]:
    """(record, None) for a current record of the cache; (None, why) when there is none, or it is unreadable
    or stale."""
    path = record_path(info.path)
    if not path.is_file():
        return None, f"no audit yet: run `audit {info.path}`"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, f"the audit record {path} cannot be read; run `audit {info.path}` again"
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None, f"{path} is not an audit record; run `audit {info.path}` again"
    if (record.get("feature_key"), record.get("cache_updated"), record.get("images")) != (
            info.key, info.updated, len(info.images)):
        return None, f"the audit is older than the cache (images were added since); run `audit {info.path}` again"
    return record, None
