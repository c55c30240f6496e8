"""Exporting a cache to the classic bottleneck `.npz` format.

`DogVGG16Data.npz` holds keys `train`, `valid`, `test`: float32 arrays (N, 7, 7, 512) whose rows
follow the file order of `sklearn.datasets.load_files(<dogImages>/<split>)` with default
arguments (shuffle=True, random_state=0), which is where the classic notebook's labels come from.
The export writes those same keys plus `<split>_labels`, `<split>_paths` (the relpath of every
row's image, relative to the dataset folder), `class_names`, `feature_key` and `backbone` (the
cache's backbone, which `import-npz` reads to recognise the network), streaming the feature rows
into the zip entry so memory stays bounded on full-size datasets.

Classic layout (`classic=True`, `export-npz --classic`). The notebook's other files have other row
shapes (`pipeline.interop.classic`). A cache of one of those networks at 224 px, without pooling,
is written in its file's layout: a map already of the file's row shape is written as is; a
ResNet50 `conv5_block3_out` map (7x7x2048) is averaged over its 49 positions to 1x1x2048 (the
same float32 mean `--pool avg` heads use), which is what Keras 2.0's `avg_pool` gave. Any other
cache is refused, naming the extraction that would fit.

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
from pipeline.errors import PipelineError, UsageError
from pipeline.interop.classic import CLASSIC_INPUT_SIZE, ClassicNetwork, classic_table, network_of

#: `sklearn.datasets.load_files` defaults used by the classic notebook.
LOAD_FILES_RANDOM_STATE = 0
#: Layouts whose split folders hold class folders, the structure `load_files` reads.
CLASS_FOLDER_LAYOUTS = (dogimages.NAME, generic.NAME)
#: The entry naming the cache's backbone.
BACKBONE_ENTRY = "backbone"


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
    if info.dataset.layout not in CLASS_FOLDER_LAYOUTS:
        return members
    folders = {name: {info.images.relpath[i].split("/")[0] for i in info.images.in_split(name)} for name in SPLITS}
    if any(folders[split] & folders[other] for other in SPLITS if other != split):
        return members  # e.g. valid carved from train/: load_files(train/) would list both
    positions = load_files_positions([info.images.relpath[i] for i in members])
    return members if positions is None else members[positions]


def classic_layout(info: CacheInfo) -> tuple[ClassicNetwork, bool, str]:
    """(the classic network of the cache, whether rows are averaged to 1x1, what the export does);
    `UsageError` when the cache cannot be written in a classic file's layout (see the module doc)."""
    spec = info.spec
    network = network_of(spec.backbone)
    if network is None:
        raise UsageError(f"--classic: the notebook's files come from five networks, and this cache is "
                         f"{spec.backbone}:\n{classic_table()}\nExport it without --classic (its own row shape)")
    shape = tuple(info.feature_shape)
    wanted = (f"extract --backbone {network.backbone} --layer {network.source_layer} --input-size "
              f"{CLASSIC_INPUT_SIZE} (no --pool)")
    if spec.input_size != CLASSIC_INPUT_SIZE or spec.pooling != "none":
        raise UsageError(f"--classic: {network.file_name} holds {network.description} rows at {CLASSIC_INPUT_SIZE} "
                         f"px, unpooled; this cache is {spec.input_size} px with pooling {spec.pooling}. "
                         f"Export a cache of `{wanted}`")
    if spec.layer in (network.recorded_layer, network.source_layer) and shape == network.row_shape:
        return network, False, f"{spec.backbone} {spec.layer} rows written as they are ({_text(shape)}, " \
                               f"the layout of {network.file_name})"
    if network.averaged and spec.layer == network.source_layer and shape == network.source_shape:
        return network, True, (f"{spec.backbone} {spec.layer} maps ({_text(shape)}) averaged over their "
                               f"{shape[0] * shape[1]} positions to {_text(network.row_shape)}, the layout of "
                               f"{network.file_name} (Keras 2.0's avg_pool)")
    raise UsageError(f"--classic: {network.file_name} holds {network.description} rows "
                     f"({_text(network.row_shape)}); this cache holds {spec.layer} rows of {_text(shape)}. "
                     f"Export a cache of `{wanted}`")


def export_npz(cache_path: Path, out_path: Path, classic: bool = False) -> dict:
    """Write the cache's features and labels to `out_path`; returns {split: rows} written.

    With `classic` the rows are written in the layout of the network's classic file (module doc);
    use `classic_layout` to say what that does.
    """
    info = read_cache_info(cache_path)
    info.require_whole_dataset()
    out_path = Path(out_path)
    averaged = classic_layout(info)[1] if classic else False
    row_shape = (1, 1, info.feature_shape[-1]) if averaged else tuple(info.feature_shape)
    counts = {}
    try:
        with atomic_write_path(out_path, make_folder=False) as temp:
            with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                for split in SPLITS:
                    members = export_order(info, split)
                    counts[split] = len(members)
                    _write_streamed(archive, split, info.path, info.images.row[members], row_shape, averaged)
                    _write_array(archive, f"{split}_labels", info.images.label[members].astype(np.int64))
                    _write_array(archive, f"{split}_paths",
                                 np.array([info.images.relpath[i] for i in members], dtype=str))
                _write_array(archive, "class_names", np.array(info.class_names, dtype=str))
                _write_array(archive, "feature_key", np.array(info.key))
                _write_array(archive, BACKBONE_ENTRY, np.array(info.spec.backbone))
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


def _write_streamed(archive: zipfile.ZipFile, name: str, cache_path: Path, rows: np.ndarray, shape,
                    averaged: bool) -> None:
    """Stream `rows` of the cache into array `name` of `shape` rows (spatially averaged when `averaged`)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
              "shape": (len(rows),) + tuple(shape)}
    with archive.open(f"{name}.npy", "w", force_zip64=True) as handle:
        np.lib.format.write_array_header_2_0(handle, header)
        for start in range(0, len(rows), READ_BLOCK_ROWS):
            block = load_rows(cache_path, rows[start:start + READ_BLOCK_ROWS], pooling="avg" if averaged else None)
            handle.write(block.astype("<f4", copy=False).tobytes())


def _text(shape) -> str:
    return "x".join(str(d) for d in shape)
