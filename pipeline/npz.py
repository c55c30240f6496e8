"""Exporting a cache to the classic bottleneck `.npz` format.

`DogVGG16Data.npz` holds keys `train`, `valid`, `test`: float32 arrays (N, 7, 7, 512) in the
order of the images. The export writes those same keys (rows in the cache's image order per
split) plus `<split>_labels`, `<split>_paths`, `class_names` and `feature_key`, streaming the
feature rows into the zip entry so memory stays bounded on full-size datasets.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from pipeline.cache import READ_BLOCK_ROWS, load_rows, read_cache_info
from pipeline.dataset import SPLITS


def export_npz(cache_path: Path, out_path: Path) -> dict:
    """Write the cache's features and labels to `out_path`; returns {split: rows} written."""
    info = read_cache_info(cache_path)
    info.require_whole_dataset()
    out_path = Path(out_path)
    temp = out_path.with_name(f".{out_path.name}.tmp{os.getpid()}")
    counts = {}
    try:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for split in SPLITS:
                members = info.images.in_split(split)
                counts[split] = int(len(members))
                _write_streamed(archive, split, info.path, info.images.row[members], info.feature_shape)
                _write_array(archive, f"{split}_labels", info.images.label[members].astype(np.int64))
                _write_array(archive, f"{split}_paths", np.array([info.images.relpath[i] for i in members], dtype=str))
            _write_array(archive, "class_names", np.array(info.class_names, dtype=str))
            _write_array(archive, "feature_key", np.array(info.key))
        os.replace(temp, out_path)
    finally:
        if temp.exists():
            temp.unlink()
    return counts


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
