"""Dataset layouts: recognise a folder's layout and read it into a `DatasetIndex`.

Each layout is a module with `NAME`, `DESCRIPTION`, `detect(root) -> bool` and
`load(root) -> DatasetIndex`. Detection tries the specific layouts first and falls back to the
generic class-folder layout.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.dataset import DatasetIndex
from pipeline.errors import DatasetError
from pipeline.layouts import generic

#: Layouts in detection order: the most specific first, the generic fallback last.
LAYOUTS = {module.NAME: module for module in (generic,)}


def layout_names() -> list[str]:
    """Names accepted by `--layout` (besides "auto")."""
    return list(LAYOUTS)


def discover(root: Path | str, layout: str = "auto") -> DatasetIndex:
    """Read the dataset at `root` with the named layout, or the first one that recognises it."""
    root = Path(root).resolve()
    if not root.exists():
        raise DatasetError(f"dataset path {root} does not exist; pass the folder that holds your images")
    if layout != "auto":
        if layout not in LAYOUTS:
            raise DatasetError(f"unknown layout {layout!r}; choose one of: auto, {', '.join(LAYOUTS)}")
        return LAYOUTS[layout].load(root)
    for module in LAYOUTS.values():
        if module.detect(root):
            return module.load(root)
    known = "; ".join(f"{m.NAME}: {m.DESCRIPTION}" for m in LAYOUTS.values())
    raise DatasetError(f"could not recognise the layout of {root}. Known layouts: {known}")
