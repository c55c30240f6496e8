"""`import-npz`: turn the classic precomputed bottleneck files into feature caches heads can use.

`DogVGG16Data.npz` (Udacity dog project) holds `train`, `valid` and `test`: float32 arrays of
shape (N, 7, 7, 512) and no labels; its siblings for VGG19, ResNet50, InceptionV3 and Xception
have the same keys and row order with their own row shapes (`pipeline.interop.classic` has the
table, and how a file's network is recognised: `--backbone`, file name, row shape). Each row
is attached to one image file of the `--labels` folder; its label is the file's class folder,
and its cache row is addressed by the sha256 of the file, like every cache row. Which file a row belongs to:

- Files written by `export-npz` name it: `<split>_paths` holds the relpath (relative to the
  dataset folder) of every row's image. Those paths are used whenever the file has them: every
  path must be a file of that split in `--labels`, each split must have one path per row and no
  path twice, otherwise the import is refused. Images of `--labels` the file does not name are
  listed as failures (the npz has no row for them).
- The original Udacity file has no paths. Its rows follow the file order of
  `sklearn.datasets.load_files(<dogImages>/<split>)` with default arguments (shuffle=True,
  random_state=0), which is how the classic notebook listed the images. `load_files_order`
  reproduces that order exactly: class folders sorted by name, the entries of each sorted by
  name, then one `numpy.random.RandomState(0).shuffle` of the positions. Row i of a split is the
  i-th file of that order. The order depends on how many entries are listed, so it is rebuilt
  from the images only (litter such as `.DS_Store` added to a copy would shift every row),
  falling back to every entry, exactly as `load_files` sees them, when that is what matches the
  npz. When neither listing has as many entries as the npz has rows, the import is refused:
  attaching labels to a guessed order would silently mislabel.

Feature key. The weights, resizing and preprocessing that produced the file cannot be verified,
so the `FeatureSpec` records only what is known - the network's backbone and Keras 2.0 layer (e.g.
vgg16 block5_pool, resnet50 avg_pool), input 224, pooling none - and says "unknown (imported)" for
the rest. Its weights fingerprint is
`imported-npz:sha256:<sha256 of the npz file>`, so the key names the exact file: re-importing it
gives the same key, while every extracted cache has another key, so a head fitted on imported
features refuses extracted features and the reverse (`predict` refuses such heads too: new images
cannot be featurised the way the file was).

Memory: the arrays are streamed from the zip member (stored or deflated) in blocks of
`IMPORT_BLOCK_ROWS` rows and committed in segments through `pipeline.cache.writer`, then
consolidated into the cache like an extraction, so memory does not grow with the file. Measured
on a full-size synthetic file (8,351 rows of 7x7x512, 838 MB) on the 2-core development machine:
peak resident memory 221 MB (of which about 50 MB is the interpreter and libraries), 27 s wall
time - two reads of the npz (its sha256, then the rows) and two writes of 840 MB (segments, then
the consolidated cache).
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.backbones.registry import get_backbone
from pipeline.cache.builder import CacheContents, write_dataset_cache
from pipeline.cache.format import cache_file_name, partial_dir_of
from pipeline.cache.key import ORIGIN_IMPORTED_NPZ, UNKNOWN, FeatureSpec, library_versions
from pipeline.cache.lock import CacheLock
from pipeline.cache.provenance import OriginInfo, WeightsInfo
from pipeline.cache.rows import row_digest
from pipeline.cache.segments import SegmentWriter, existing_rows
from pipeline.data.dataset import SPLITS, DatasetIndex, SkippedFile
from pipeline.data.hashing import sha256_file
from pipeline.data.hygiene import apply_hygiene
from pipeline.data.images import is_candidate_image
from pipeline.data.indexing import dataset_name_of, hash_dataset
from pipeline.data.layouts import discover, dogimages, generic
from pipeline.data.layouts.files import examples
from pipeline.data.layouts.generic import split_dirs
from pipeline.errors import DatasetError
from pipeline.extract.options import check_dataset_name
from pipeline.interop.classic import CLASSIC_INPUT_SIZE, ClassicNetwork, network_of, recognise
from pipeline.interop.npz_export import BACKBONE_ENTRY, LOAD_FILES_RANDOM_STATE
from pipeline.npz_safety import check_npz

#: The row shape of DogVGG16Data.npz (VGG16 block5_pool at 224x224).
CLASSIC_ROW_SHAPE = network_of("vgg16").row_shape
#: The weights fingerprint of imported features names the npz file: "imported-npz:sha256:<its sha256>".
FINGERPRINT_PREFIX = "imported-npz:sha256:"
STORE_DTYPE = "float32"
#: Layouts whose labels are class folders, the structure `load_files` reads.
LABEL_LAYOUTS = (dogimages.NAME, generic.NAME)
#: Rows read from the npz at a time: about 13 MB of VGG16 maps, small next to the segment buffer.
IMPORT_BLOCK_ROWS = 128
_NPY_SUFFIX = ".npy"
#: `export-npz` names the image of every row of split S in the array `S_paths`.
PATHS_SUFFIX = "_paths"
_NOT_LISTED = ("not in load_files' listing of its split (an image in a sub-folder of a class folder), so the npz "
               "has no row for it")
_NOT_IN_PATHS = "not among the files the npz has rows for (its <split>_paths), so it has no features"
_SUPPORTED_NPY_VERSIONS = ((1, 0), (2, 0))


@dataclass
class ImportSummary:
    """What an import did, for the CLI summary and `--json`."""

    cache_path: str
    npz: str
    labels_dir: str
    rows: dict
    images: int
    classes: int
    feature_shape: list
    feature_key: str
    failures: list
    seconds: float
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class NpyHeader:
    """Shape and dtype of one array in an npz file, read without loading it."""

    shape: tuple[int, ...]
    dtype: np.dtype


def load_files_order(container: Path, images_only: bool = False,
                     random_state: int = LOAD_FILES_RANDOM_STATE) -> list[Path]:
    """The `filenames` order of `sklearn.datasets.load_files(container, random_state=...)`.

    `images_only` lists visible image files in visible class folders only, i.e. the order
    `load_files` gave on a copy without litter.
    """
    container = Path(container)
    folders = [name for name in sorted(os.listdir(container)) if os.path.isdir(container / name)]
    files = []
    for folder in folders:
        if images_only and folder.startswith("."):
            continue
        entries = [container / folder / name for name in sorted(os.listdir(container / folder))]
        if images_only:
            entries = [path for path in entries if is_candidate_image(path) and path.is_file()]
        files.extend(entries)
    positions = np.arange(len(files))
    np.random.RandomState(random_state).shuffle(positions)
    return [files[i] for i in positions]


def read_npz_headers(npz_path: Path) -> dict[str, NpyHeader]:
    """{array name: header} of every `.npy` member, refusing files numpy did not write plainly."""
    try:
        with zipfile.ZipFile(npz_path) as archive:
            headers = {}
            for member in archive.namelist():
                if member.endswith(_NPY_SUFFIX):
                    with archive.open(member) as handle:
                        headers[member[:-len(_NPY_SUFFIX)]] = _read_header(handle, npz_path, member)
            return headers
    except (zipfile.BadZipFile, OSError) as error:
        raise DatasetError(f"{npz_path} is not a readable .npz file ({error}); download it again") from error


def iter_npz_blocks(npz_path: Path, name: str, block_rows: int = IMPORT_BLOCK_ROWS) -> Iterator[np.ndarray]:
    """Yield consecutive row blocks of array `name` as float32, never holding more than one block."""
    with zipfile.ZipFile(npz_path) as archive, archive.open(name + _NPY_SUFFIX) as handle:
        header = _read_header(handle, npz_path, name + _NPY_SUFFIX)
        row_shape = header.shape[1:]
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * header.dtype.itemsize
        for start in range(0, header.shape[0], block_rows):
            count = min(block_rows, header.shape[0] - start)
            data = handle.read(count * row_bytes)
            if len(data) != count * row_bytes:
                raise DatasetError(f"{npz_path} ends in the middle of array {name!r}; the file is truncated - "
                                   "download it again")
            yield np.frombuffer(data, dtype=header.dtype).reshape((count,) + row_shape).astype(np.float32, copy=False)


def import_npz(npz_path: Path, labels_dir: Path, cache_dir: Path, name: str | None = None,
               drop_cross_split_duplicates: bool = False, backbone: str | None = None) -> ImportSummary:
    """Import `npz_path` with labels from the dogImages folder `labels_dir` into a cache in `cache_dir`.

    `backbone` names the network that computed the file (else it is recognised, see
    `pipeline.interop.classic.recognise`).
    """
    started = time.perf_counter()
    npz_path, cache_dir = Path(npz_path), Path(cache_dir)
    if name is not None:
        check_dataset_name(name)  # the cache must land inside cache_dir, as extract's --name
    check_npz(npz_path)  # declared shapes against the file size and sane bounds, before anything is read
    headers = _check_headers(npz_path)
    network, how = recognise(npz_path.name, headers["train"].shape[1:], backbone, read_backbone_hint(npz_path, headers))
    stored_paths = read_row_paths(npz_path, headers)
    index = _labels_index(labels_dir)
    recognised = f"{network.description} ({network.file_name}'s layout), recognised from {how}"
    if stored_paths is not None:
        notes = [recognised, f"features imported from {npz_path.name}: each row attached to the file its "
                 + "/".join(f"{split}_paths" for split in SPLITS) + " entry names"]
        _check_row_paths(stored_paths, index, npz_path)
        row_paths, unlisted_reason = stored_paths, _NOT_IN_PATHS
    else:
        notes = [recognised, f"features imported from {npz_path.name}: rows follow "
                 f"sklearn.datasets.load_files(<split>) order (shuffle=True, random_state={LOAD_FILES_RANDOM_STATE})"]
        folders = split_dirs(index.root)
        row_paths = {split: [_relpath(index.root, path) for path in
                             _matching_order(folders[split], headers[split].shape[0], npz_path, notes)]
                     for split in SPLITS}
        unlisted_reason = _NOT_LISTED
    index, row_records = _attach_rows(index, row_paths, notes, unlisted_reason)
    index = apply_hygiene(index, drop_cross_split=drop_cross_split_duplicates)

    npz_sha256 = sha256_file(npz_path)
    spec = imported_spec(npz_sha256, network)
    name = name or dataset_name_of(npz_path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_path = cache_dir / cache_file_name(name, spec)
    feature_shape = headers["train"].shape[1:]
    with CacheLock(cache_path):
        available = existing_rows(cache_path, spec.key())
        mismatched = _stream_rows(npz_path, row_records, cache_path, spec, feature_shape, available)
        if mismatched:
            notes.append(f"{mismatched} files are byte-identical to another file but have different rows in the npz; "
                         "the first row is used")
        available = existing_rows(cache_path, spec.key())
        _write(cache_path, spec, npz_path, npz_sha256, replace(index, notes=tuple(notes) + index.notes), name,
               available, feature_shape)
    return ImportSummary(
        cache_path=str(cache_path), npz=str(npz_path), labels_dir=str(index.root),
        rows={split: headers[split].shape[0] for split in SPLITS}, images=len(index.records),
        classes=len(index.class_names), feature_shape=list(feature_shape), feature_key=spec.key(),
        failures=[{"path": s.relpath, "reason": s.reason} for s in index.skipped],
        seconds=round(time.perf_counter() - started, 3), notes=notes + list(index.notes),
    )


def imported_spec(npz_sha256: str, network: ClassicNetwork | None = None) -> FeatureSpec:
    """The feature spec of features imported from the npz file with this sha256: what is known, and the file.

    `network` is the classic file's network (default: VGG16's DogVGG16Data.npz).
    """
    network = network or network_of("vgg16")
    return FeatureSpec(
        backbone=get_backbone(network.backbone).name, weights_fingerprint=FINGERPRINT_PREFIX + npz_sha256,
        layer=network.recorded_layer, input_size=CLASSIC_INPUT_SIZE, resize_policy=UNKNOWN,
        resize_filter=None, preprocessing=UNKNOWN, precision=UNKNOWN, pooling="none", store_dtype=STORE_DTYPE,
    )


def _labels_index(labels_dir: Path) -> DatasetIndex:
    """The hashed class-folder index of `labels_dir`, which must have train/, valid/ and test/."""
    index = hash_dataset(discover(labels_dir))
    if index.layout not in LABEL_LAYOUTS:
        raise DatasetError(f"{labels_dir} was read as the {index.layout} layout; --labels must be the dogImages "
                           "folder (train/, valid/, test/ of class folders) that the npz was computed from")
    missing = [split for split in SPLITS if split not in split_dirs(index.root)]
    if missing:
        raise DatasetError(f"{index.root} has no {'/'.join(missing)} folder; --labels must be the dogImages folder "
                           "with train/, valid/ and test/ that the npz was computed from")
    return index


def read_row_paths(npz_path: Path, headers: dict[str, NpyHeader]) -> dict[str, list[str]] | None:
    """{split: relpath of each row} from the `<split>_paths` arrays `export-npz` writes; None without them."""
    names = {split: f"{split}{PATHS_SUFFIX}" for split in SPLITS}
    present = [name for name in names.values() if name in headers]
    if not present:
        return None
    if len(present) != len(names):
        missing = [name for name in names.values() if name not in headers]
        raise DatasetError(f"{npz_path} has {', '.join(present)} but no {', '.join(missing)}; the file is incomplete "
                           "- export it again with `export-npz`")
    for split, name in names.items():
        header, rows = headers[name], headers[split].shape[0]
        if header.dtype.kind != "U" or len(header.shape) != 1:
            raise DatasetError(f"{name} in {npz_path} must be a 1-D array of relpaths (strings), got "
                               f"{header.shape} {header.dtype}; export the file again with `export-npz`")
        if header.shape[0] != rows:
            raise DatasetError(f"{npz_path} has {rows} {split} rows but {header.shape[0]} {name} entries, so rows "
                               "cannot be matched to files; export the file again with `export-npz`")
    arrays = load_small_arrays(npz_path, list(names.values()), "the row paths")
    return {split: [str(path) for path in arrays[name].tolist()] for split, name in names.items()}


def read_backbone_hint(npz_path: Path, headers: dict[str, NpyHeader]) -> str | None:
    """The backbone `export-npz` names in the file's `backbone` entry (a string scalar); None without one."""
    header = headers.get(BACKBONE_ENTRY)
    if header is None or header.dtype.kind != "U" or header.shape != ():
        return None
    return str(load_small_arrays(npz_path, [BACKBONE_ENTRY], "the backbone entry")[BACKBONE_ENTRY])


def load_small_arrays(npz_path: Path, names: list[str], what: str) -> dict[str, np.ndarray]:
    """{name: array} of the small (non-feature) arrays `names`, loaded whole; the one place that does."""
    try:
        with np.load(npz_path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in names}
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise DatasetError(f"cannot read {what} of {npz_path} ({error}); export the file again") from error


def _check_row_paths(row_paths: dict[str, list[str]], index: DatasetIndex, npz_path: Path) -> None:
    """Refuse unless every path names a distinct file of its split in the labels folder."""
    split_of = {record.relpath: record.split for record in index.records}
    unreadable = {skipped.relpath for skipped in index.skipped}
    fix = (f"--labels must be the dataset folder the npz was exported from (its paths are relative to that folder); "
           f"check that {index.root} is that folder, unchanged since the export")
    every = [path for split in SPLITS for path in row_paths[split]]
    unknown = [path for path in every if path not in split_of and path not in unreadable]
    if unknown:
        raise DatasetError(f"{len(unknown)} of the {len(every)} files {npz_path.name} has rows for are not in "
                           f"{index.root}: {examples(unknown)}. {fix}")
    moved = [f"{path} ({split} in the npz, {split_of[path]} here)" for split in SPLITS
             for path in row_paths[split] if path in split_of and split_of[path] != split]
    if moved:
        raise DatasetError(f"{len(moved)} files are in another split in {index.root} than in {npz_path.name}: "
                           f"{examples(moved)}. {fix}")
    seen, repeated = set(), []
    for path in every:
        if path in seen:
            repeated.append(path)
        seen.add(path)
    if repeated:
        raise DatasetError(f"{npz_path.name} names {len(repeated)} files for more than one row: {examples(repeated)}; "
                           "the file is damaged - export it again with `export-npz`")


def _attach_rows(index: DatasetIndex, row_paths: dict, notes: list, unlisted_reason: str) -> tuple[DatasetIndex, dict]:
    """(the index restricted to images that have a row, {split: [record or None for each npz row]})."""
    by_path = {record.relpath: record for record in index.records}
    row_records = {split: [by_path.get(path) for path in paths] for split, paths in row_paths.items()}
    listed = {path for paths in row_paths.values() for path in paths}
    unreadable = listed & {skipped.relpath for skipped in index.skipped}
    if unreadable:
        notes.append(f"{len(unreadable)} npz rows belong to files that cannot be read here; their rows are unused "
                     "and the files are listed as failures")
    unlisted = [r for r in index.records if r.relpath not in listed]
    if unlisted and unlisted_reason == _NOT_IN_PATHS:
        notes.append(f"{len(unlisted)} images in the labels folder have no row in the npz; they are listed as failures")
    attached = index.with_records([r for r in index.records if r.relpath in listed],
                                  skipped=[SkippedFile(r.relpath, unlisted_reason) for r in unlisted])
    return attached, row_records


def _read_header(handle, npz_path: Path, member: str) -> NpyHeader:
    try:
        version = np.lib.format.read_magic(handle)
        if version not in _SUPPORTED_NPY_VERSIONS:
            raise ValueError(f"unsupported .npy format version {version}")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read(handle)
    except ValueError as error:
        raise DatasetError(f"{member} in {npz_path} is not a plain numpy array ({error})") from error
    if dtype.hasobject:
        raise DatasetError(f"{member} in {npz_path} holds Python objects; only numeric arrays are imported (no pickle)")
    if fortran_order:
        raise DatasetError(f"{member} in {npz_path} is stored in Fortran order; re-save it with "
                           "np.savez(path, train=np.ascontiguousarray(train), ...)")
    return NpyHeader(tuple(shape), dtype)


def _check_headers(npz_path: Path) -> dict[str, NpyHeader]:
    headers = read_npz_headers(npz_path)
    missing = [split for split in SPLITS if split not in headers]
    if missing:
        raise DatasetError(f"{npz_path} has no {', '.join(missing)} array (it has: {', '.join(headers) or 'none'}); "
                           "expected the classic keys train, valid and test")
    shapes = {split: headers[split].shape[1:] for split in SPLITS}
    if len(set(shapes.values())) != 1 or not all(headers[s].dtype.kind == "f" for s in SPLITS):
        raise DatasetError(f"{npz_path}: train, valid and test must be float arrays with the same row shape, got "
                           + ", ".join(f"{s} {headers[s].shape} {headers[s].dtype}" for s in SPLITS))
    return headers


def _matching_order(split_dir: Path, rows: int, npz_path: Path, notes: list) -> list[Path]:
    """The load_files order of `split_dir` whose length equals the npz's row count (see module doc)."""
    images = load_files_order(split_dir, images_only=True)
    if len(images) == rows:
        return images
    everything = load_files_order(split_dir)
    if len(everything) == rows:
        notes.append(f"{split_dir.name}/: the npz rows include {rows - len(images)} non-image entries that "
                     "load_files listed; their rows are unused")
        return everything
    raise DatasetError(
        f"{npz_path.name} has {rows} {split_dir.name} rows, but {split_dir} holds {len(images)} images "
        f"({len(everything)} entries in all), so rows cannot be matched to files. --labels must be the exact "
        "dogImages folder the npz was computed from (the classic release has 6,680 / 835 / 836 images)"
    )


def _relpath(root: Path, path: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _stream_rows(npz_path, row_records, cache_path, spec, feature_shape, available) -> int:
    """Commit the npz rows of images not yet in the cache; returns how many duplicate rows disagreed."""
    writer = SegmentWriter(partial_dir_of(cache_path), spec.key(), feature_shape, spec.store_dtype)
    digest_of: dict[str, int] = {}
    mismatched = 0
    for split in SPLITS:
        records = row_records[split]
        start = 0
        for block in iter_npz_blocks(npz_path, split):
            shas, rows = [], []
            for offset, record in enumerate(records[start:start + len(block)]):
                if record is None:
                    continue
                digest = row_digest(block[offset])
                if record.sha256 in digest_of:
                    mismatched += digest != digest_of[record.sha256]
                    continue
                digest_of[record.sha256] = digest
                if record.sha256 not in available:
                    shas.append(record.sha256)
                    rows.append(offset)
            writer.add(shas, block[rows])
            start += len(block)
    writer.flush()
    return mismatched


def _write(cache_path, spec, npz_path, npz_sha256, index: DatasetIndex, name, available, feature_shape) -> None:
    """Consolidate the rows of `index` into the cache file (through the builder every cache writer uses)."""
    usable = [r for r in index.records if r.sha256 in available]
    source = str(npz_path.resolve())
    weights = WeightsInfo(source=ORIGIN_IMPORTED_NPZ, path=source, verified=None, request=ORIGIN_IMPORTED_NPZ,
                          description=f"unknown: features imported from {npz_path.name} ({spec.weights_fingerprint})")
    origin = OriginInfo(kind=ORIGIN_IMPORTED_NPZ, file=source, sha256=npz_sha256)
    contents = CacheContents(spec=spec, weights=weights, origin=origin, versions=library_versions(), name=name,
                             index=index, usable=usable, failures=[(s.relpath, s.reason) for s in index.skipped],
                             imported_from=source)
    write_dataset_cache(cache_path, contents, available, keep_existing_rows=False, feature_shape=feature_shape)
