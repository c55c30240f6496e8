"""`report --html`: write a cache's report page next to it (or where asked), atomically."""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import write_text_atomically
from pipeline.report.content import report_content
from pipeline.report.html import render

REPORT_SUFFIX = ".report.html"


def default_report_path(cache_path: Path) -> Path:
    """Where `report --html` writes by default: `<cache stem>.report.html` beside the cache."""
    cache_path = Path(cache_path)
    return cache_path.with_name(cache_path.stem + REPORT_SUFFIX)


def write_html_report(cache_path: Path, out: Path | None = None) -> Path:
    """Render the report of the cache at `cache_path` to `out` (default beside it); returns the path."""
    out = Path(out) if out is not None else default_report_path(cache_path)
    return write_text_atomically(out, render(report_content(cache_path)))
