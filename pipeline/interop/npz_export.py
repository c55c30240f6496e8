"""Exporting a cache to the classic bottleneck `.npz` format.

`DogVGG16Data.npz` holds keys `train`, `valid`, `test`: float32 arrays (N, 7, 7, 512) whose rows
follow the file order of `sklearn.datasets.load_files(<dogImages>/<split>)` with default
arguments (shuffle=True, random_state=0), which is where the classic notebook's labels come from.
The export writes those same keys plus `<split>_labels`, `<split>_paths` (the relpath of every
row's image, relative to the dataset folder), `class_names` and `feature_key`, streaming the
feature rows into the zip entry so memory stays bounded on full-size datasets.

Row order. A split whose images all sit in one split folder of class folders
(`<split>/<class>/<file>`, the dogImages layout or the generic layout with split folders) is
written in `load_files` order (`load_files_positions`), so the file is a drop-in replacement for
the classic one: rows line up with the notebook's `load_files` labels as long as the cache holds
every image of the folder. Any other split keeps the cache's image order. Either way `<split>_paths`
names the image of every row, and `import-npz` attaches rows by those paths.

The file is written atomically (`pipeline.atomic`), so a failed export leaves neither a partial
`OUT` nor a temporary file.
"""

from __future__ import annotations

import errno
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_write_path
from pipeline.cache.format import CacheInfo, read_cache_info
from pipeline.cache.rows import READ_BLOCK_ROWS, load_rows
from pipeline.data.dataset import SPLITS
from pipeline.data.layouts import dogimages, generic
from pipeline.errors import PipelineError

#: `sklearn.datasets.load_files` defaults used by the classic notebook.
LOAD_FILES_RANDOM_STATE = 0
#: Layouts whose split folders hold class folders, the structure `load_files` reads.
CLASS_FOLDER_LAYOUTS = (dogimages.NAME, generic.NAME)


class NpzWriteError(PipelineError):
    """The output `.npz` file cannot be written."""


def load_files_positions(relpaths: Sequence[str], random_state: int = LOAD_FILES_RANDOM_STATE) -> np.ndarray | None:
    """Positions of `relpaths` (one split) in `load_files(<split folder>, random_state=...)` order.

    `load_files` lists the class folders sorted by name, the files of each sorted by name, then
    shuffles the positions once with `RandomState(random_state)`. Returns None unless every path
    is `<split folder>/<class>/<file>` under one split folder.
    """
    parts = [relpath.split("/") for relpath in relpaths]
    if not parts or any(len(p) != 3 for p in parts) or len({p[0] for p in parts}) != 1:
        return None
    listed = np.array(sorted(range(len(parts)), key=lambda i: (parts[i][1], parts[i][2])), dtype=np.int64)
    shuffled = np.arange(len(listed))
    np.random.RandomState(random_state).shuffle(shuffled)
    return listed[shuffled]


def export_order(info: CacheInfo, split: str) -> np.ndarray:
    """Indexes (into `info.images`) of the images of `split`, in the order their rows are written."""
    members = info.images.in_split(split)
    if info.dataset.get("layout") not in CLASS_FOLDER_LAYOUTS:
        return members
    folders = {name: {info.images.relpath[i].split("/")[0] for i in info.images.in_split(name)} for name in SPLITS}
    if any(folders[split] & folders[other] for other in SPLITS if other != split):
        return members  # e.g. valid carved from train/: load_files(train/) would list both
    positions = load_files_positions([info.images.relpath[i] for i in members])
    return members if positions is None else members[positions]


def export_npz(cache_path: Path, out_path: Path) -> dict:
    """Write the cache's features and labels to `out_path`; returns {split: rows} written."""
    info = read_cache_info(cache_path)
    info.require_whole_dataset()
    out_path = Path(out_path)
    counts = {}
    try:
        with atomic_write_path(out_path, make_folder=False) as temp:
            with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                for split in SPLITS:
                    members = export_order(info, split)
                    counts[split] = len(members)
                    _write_streamed(archive, split, info.path, info.images.row[members], info.feature_shape)
                    _write_array(archive, f"{split}_labels", info.images.label[members].astype(np.int64))
                    _write_array(archive, f"{split}_paths",
                                 np.array([info.images.relpath[i] for i in members], dtype=str))
                _write_array(archive, "class_names", np.array(info.class_names, dtype=str))
                _write_array(archive, "feature_key", np.array(info.key))
    except OSError as error:
        raise _write_error(out_path, error) from None
    return counts


def _write_error(out_path: Path, error: OSError) -> NpzWriteError:
    """Why `out_path` cannot be written, and what to do about it."""
    folder = out_path.parent
    reason = error.strerror or str(error)
    if not folder.exists():
        return NpzWriteError(f"cannot write {out_path}: the folder {folder} does not exist; create it first "
                             f"(mkdir -p {folder}) or choose another output path")
    if not folder.is_dir():
        return NpzWriteError(
            f"cannot write {out_path}: {folder} is not a folder; choose an output path inside a folder")
    if error.errno == errno.ENOSPC:
        return NpzWriteError(f"cannot write {out_path}: no space left in {folder} ({reason}); free some space or "
                             "write to another disk")
    return NpzWriteError(f"cannot write {out_path}: the folder {folder} does not accept new files ({reason}); "
                         "choose a folder you can write to, or fix its permissions")


def _write_array(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
        np.lib.format.write_array(handle, array, allow_pickle=False)


def _write_streamed(archive: zipfile.ZipFile, name: str, cache_path: Path, rows: np.ndarray, shape) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
              "shape": (len(rows),) + tuple(shape)}
    with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
        np.lib.format.write_array_header_2_0(handle, header)
        for start in range(0, len(rows), READ_BLOCK_ROWS):
            block = load_rows(cache_path, rows[start:start + READ_BLOCK_ROWS], pooling=None)
            handle.write(block.astype("<f4", copy=False).tobytes())
