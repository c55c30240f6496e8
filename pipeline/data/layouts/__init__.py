"""Dataset layouts: recognise a folder's layout and read it into a `DatasetIndex`.

Each layout is a module with `NAME`, `DESCRIPTION`, `detect(root) -> bool` and
`load(root) -> DatasetIndex`. Detection tries the specific layouts first and falls back to the
generic class-folder layout. `root` may be a file (only the CSV manifest accepts one), so
`detect` must return False, never raise, for a root it does not understand.

Detection order and why:
- oxford-pets, stanford-dogs: recognised by their annotation/list files and folder naming;
- petimages: a folder named PetImages holding Cat/ and Dog/;
- kaggle-dogs-vs-cats: a flat folder whose images are all named `<label>.<number>.<ext>`;
- dogimages: class folders all named `NNN.Name` (otherwise it is the generic layout);
- csv: a .csv file, or a folder with exactly one manifest CSV (a header naming path and label);
- generic: any folder with sub-folders.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.dataset import DatasetIndex
from pipeline.data.layouts import (
    csv_manifest,
    dogimages,
    generic,
    kaggle_dogs_vs_cats,
    oxford_pets,
    petimages,
    stanford_dogs,
)
from pipeline.errors import DatasetError

#: Layouts in detection order: the most specific first, the generic fallback last.
LAYOUTS = {
    module.NAME: module
    for module in (oxford_pets, stanford_dogs, petimages, kaggle_dogs_vs_cats, dogimages, csv_manifest, generic)
}


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
    raise DatasetError(_unrecognised(root))


def _unrecognised(root: Path) -> str:
    """Why `root` matched no layout, in the user's terms, and what the layouts look like."""
    known = "\n  ".join(f"{m.NAME}: {m.DESCRIPTION}" for m in LAYOUTS.values())
    if root.is_dir():
        entries = [entry for entry in root.iterdir() if not entry.name.startswith(".")]
        if not entries:
            return f"{root} is empty; put one folder of images per class in it (e.g. {root}/cat/, {root}/dog/)"
        if not any(entry.is_dir() for entry in entries):
            return (f"{root} holds {len(entries)} files but no class folders; put the images of each class in a "
                    f"folder named after the class (e.g. {root}/cat/, {root}/dog/), or pass a CSV manifest "
                    f"(path,label), or --layout NAME if it is one of:\n  {known}")
    return f"could not recognise the layout of {root}; pass --layout NAME if it is one of:\n  {known}"
