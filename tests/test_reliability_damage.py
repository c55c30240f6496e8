"""Reliability, damage: broken cache files are named with the fix; a full disk loses nothing.

Covers truncated files, flipped bytes inside a feature row, files of the wrong format, altered
provenance, the `cache ls / show / rm / verify` commands with their exit codes, and running out
of disk in the middle of a write (injected, and for real on a small tmpfs when `mount` works).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import CLASS_COLOURS, TINY_BACKBONE, TINY_CLI_ARGS, make_dataset, write_image
from reliability_support import only_cache, rows_by_sha

from pipeline.cache.format import partial_dir_of
from pipeline.cache.h5file import RecordingFile
from pipeline.cache.lock import CacheLock
from pipeline.cache.verify import verify_cache

FIX = "cache rm"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """(dataset, cache folder) of a finished tiny extraction; tests copy the folder before harming it."""
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract

    root = tmp_path_factory.mktemp("damage")
    data = make_dataset(root / "pets")
    run_extract(data, root / "cache", ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0.3))
    return data, root / "cache"


@pytest.fixture
def cache_copy(pristine, tmp_path) -> Path:
    """A private copy of the finished cache; returns the cache file."""
    shutil.copytree(pristine[1], tmp_path / "cache")
    return only_cache(tmp_path / "cache")


def _fails_naming_file_and_fix(cli, args, path: Path, *fragments):
    payload, result = cli.json(args, expect_ok=False)
    assert result.exit_code == 1
    assert str(path) in payload["error"], payload["error"]
    for fragment in fragments:
        assert fragment in payload["error"], payload["error"]
    return payload["error"]


def test_truncated_cache_is_reported_by_every_command(cache_copy, pristine, cli):
    data = cache_copy.read_bytes()
    cache_copy.write_bytes(data[: len(data) // 2])
    for command in (["cache", "verify", cache_copy], ["cache", "show", cache_copy],
                    ["fit-head", cache_copy, "--head", "logreg"],
                    ["export-npz", cache_copy, cache_copy.with_suffix(".npz")]):
        _fails_naming_file_and_fix(cli, command, cache_copy, "damaged", FIX)
    message = _fails_naming_file_and_fix(cli,
                                         ["extract", pristine[0], *TINY_CLI_ARGS, "--cache-dir", cache_copy.parent],
                                         cache_copy, "damaged", FIX)
    assert not partial_dir_of(cache_copy).exists(), "extract stops before extracting anything"
    assert "Traceback" not in message
    listing, _ = cli.json(["cache", "ls", "--cache-dir", cache_copy.parent])
    assert [row["file"] for row in listing["caches"] if "error" in row] == [str(cache_copy)]


def _feature_byte_offset(path: Path, row: int) -> int:
    with h5py.File(path, "r") as handle:
        features = handle["features"]
        row_bytes = int(np.prod(features.shape[1:])) * features.dtype.itemsize
        if features.chunks is None:
            return features.id.get_offset() + row * row_bytes
        chunk_rows = features.chunks[0]
        info = features.id.get_chunk_info_by_coord((row // chunk_rows * chunk_rows,) + (0,) * (features.ndim - 1))
        assert features.compression is None
        return info.byte_offset + (row % chunk_rows) * row_bytes


def test_flipped_bytes_in_a_feature_row_fail_verify(cache_copy, cli):
    row = 5
    offset = _feature_byte_offset(cache_copy, row) + 17
    with open(cache_copy, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert verify_cache(cache_copy) == [f"1 feature rows do not match their digests (first: row {row}); "
                                        "the file is corrupted"]
    message = _fails_naming_file_and_fix(cli, ["cache", "verify", cache_copy], cache_copy, "digests", FIX)
    assert "failed verification" in message
    quick, _ = cli.json(["cache", "verify", "--quick", cache_copy])
    assert quick["problems"] == [], "--quick skips re-hashing rows (structure and provenance only)"


def test_wrong_format_files(tmp_path, cli):
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5 at all")
    _fails_naming_file_and_fix(cli, ["cache", "verify", text], text, "damaged or not HDF5", FIX)
    foreign = tmp_path / "model.h5"
    with h5py.File(foreign, "w") as handle:
        handle["weights"] = np.zeros(3)
    _fails_naming_file_and_fix(cli, ["cache", "show", foreign], foreign, "not a feature cache made by this tool")
    _fails_naming_file_and_fix(cli, ["cache", "rm", "--yes", foreign], foreign, "nothing was removed")
    assert foreign.exists(), "cache rm never deletes someone else's HDF5 file"
    readme = tmp_path / "README.md"
    readme.write_text("hi")
    _fails_naming_file_and_fix(cli, ["cache", "rm", "--yes", readme], readme, "not a feature cache")
    assert readme.exists()
    removed, _ = cli.json(["cache", "rm", "--yes", text])
    assert removed["removed"] == [[str(text)]], "a damaged cache can always be removed"


@pytest.mark.parametrize("change, expected", [
    (lambda a: a.__setitem__("feature_spec", a["feature_spec"].replace('"input_size": 32', '"input_size": 224')),
     "feature_key does not match feature_spec (provenance was altered)"),
    (lambda a: a.__setitem__("weights", "{not json"), "damaged or incomplete"),
    (lambda a: a.__setitem__("feature_spec", "{not json"), "damaged provenance attributes"),
    (lambda a: a.__delitem__("feature_spec"), "damaged provenance attributes"),
    (lambda a: a.__setitem__("feature_spec", '{"backbone": "vgg16"}'), "inconsistent schema versions"),
    (lambda a: a.__setitem__("feature_spec", '{"schema_version": 1, "backbone": "vgg16"}'), "damaged or incomplete"),
])
def test_altered_provenance_is_detected(cache_copy, cli, change, expected):
    with h5py.File(cache_copy, "r+") as handle:
        change(handle.attrs)
    message = _fails_naming_file_and_fix(cli, ["cache", "verify", cache_copy], cache_copy, expected)
    assert "Traceback" not in message


def test_cache_ls_show_rm_manage_caches(cache_copy, pristine, tmp_path, cli):
    folder = cache_copy.parent
    (folder / "broken-vgg16-block5_pool-0000000000.h5").write_bytes(b"\0" * 100)
    unfinished = partial_dir_of(folder / "later-vgg16-block5_pool-1111111111.h5")
    unfinished.mkdir()
    shutil.copy(cache_copy, unfinished / "seg-1-1.h5")
    listing, _ = cli.json(["cache", "ls", "--cache-dir", folder])
    by_file = {Path(row["file"]).name: row for row in listing["caches"]}
    assert by_file[cache_copy.name]["images"] == 24 and by_file[cache_copy.name]["rows"] == 24
    assert "damaged" in by_file["broken-vgg16-block5_pool-0000000000.h5"]["error"]
    assert by_file["later-vgg16-block5_pool-1111111111.h5"] == {**by_file["later-vgg16-block5_pool-1111111111.h5"],
                                                               "unfinished": True, "segments": 1}
    text = cli(["cache", "ls", "--cache-dir", folder])
    assert text.exit_code == 0 and "DAMAGED" in text.output and "unfinished first extraction" in text.output

    shown, _ = cli.json(["cache", "show", cache_copy])
    assert shown["images"] == 24 and shown["failures"] == [] and shown["splits"]["test"] == 12
    fitted, _ = cli.json(["fit-head", cache_copy, "--head", "logreg"])
    stale_temp = folder / f".{cache_copy.name}.tmp12345"
    stale_temp.write_bytes(b"half a cache")

    with CacheLock(cache_copy):
        message = _fails_naming_file_and_fix(cli, ["cache", "rm", "--yes", cache_copy], cache_copy.name,
                                             "being written by another extract", "cache rm` again")
        assert f"pid {os.getpid()}" in message and cache_copy.exists()
    removed, _ = cli.json(["cache", "rm", "--yes", cache_copy, unfinished.with_suffix("")])
    assert set(removed["removed"][0]) == {str(cache_copy), str(stale_temp), str(Path(fitted["sidecar_path"]).parent)}
    assert not Path(str(cache_copy) + ".lock").exists(), "a released lock leaves no file"
    assert removed["removed"][1] == [str(unfinished)]
    assert not cache_copy.exists() and not stale_temp.exists() and not unfinished.exists()
    missing = cli.json(["cache", "rm", "--yes", cache_copy], expect_ok=False)[1]
    assert missing.exit_code == 1
    assert cli(["cache", "verify", cache_copy]).exit_code == 1, "a missing cache file is a problem with files"


def test_damaged_sibling_cache_does_not_stop_extraction(cache_copy, pristine, tmp_path, cli):
    sibling = cache_copy.with_name("other-" + cache_copy.name)
    sibling.write_bytes(cache_copy.read_bytes()[:1000])
    cache_copy.unlink()
    summary, _ = cli.json(["extract", pristine[0], *TINY_CLI_ARGS, "--cache-dir", cache_copy.parent])
    assert summary["extracted"] == 24 and verify_cache(Path(summary["cache_path"])) == []


# ----------------------------------------------------------------------------------------------
# Running out of disk


def _grow(data: Path, new_images: int) -> None:
    for index in range(new_images):
        write_image(data / "train" / "cat" / f"extra_{index}.jpg", CLASS_COLOURS["cat"], seed=900 + index)


def _inject_disk_full(monkeypatch, kind: str, after_bytes: int = 4096):
    """Make writes of `kind` files ("segment" or "cache") fail with ENOSPC after `after_bytes`."""
    real_init, real_write = RecordingFile.__init__, RecordingFile.write

    def init(self, path):
        real_init(self, path)
        self.budget = after_bytes if (kind == "segment") == (path.parent.name.endswith(".partial")) else None

    def write(self, data):
        size = memoryview(data).nbytes
        if self.budget is not None:
            self.budget -= size
            if self.budget < 0 and self.error is None:
                self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    monkeypatch.setattr(RecordingFile, "__init__", init)
    monkeypatch.setattr(RecordingFile, "write", write)


@pytest.mark.parametrize("kind", ["segment", "cache"])
def test_disk_full_mid_write_ends_cleanly_and_keeps_everything(cache_copy, pristine, tmp_path, cli, monkeypatch, kind):
    data = tmp_path / "pets"
    shutil.copytree(pristine[0], data)
    _grow(data, 12)
    before = rows_by_sha(cache_copy)
    args = ["extract", data, *TINY_CLI_ARGS, "--commit-every", "4", "--name", "pets", "--cache-dir", cache_copy.parent]
    with monkeypatch.context() as patch:
        _inject_disk_full(patch, kind)
        payload, result = cli.json(args, expect_ok=False)
    assert result.exit_code == 1, payload
    assert "the disk is full: free some space" in payload["error"] and "Nothing was lost" in payload["error"]
    assert "\n" not in payload["error"], "one clean line, not HDF5's multi-line report"
    assert verify_cache(cache_copy) == [] and rows_by_sha(cache_copy) == before, "the previous cache is intact"
    assert not [p for p in cache_copy.parent.rglob("*") if ".tmp" in p.name], "no half-written file is left"
    kept = {sha for segment in partial_dir_of(cache_copy).glob("*.h5") for sha in rows_by_sha(segment)}
    assert len(kept) == (12 if kind == "cache" else 0), "rows committed before the failure are kept"

    resumed, _ = cli.json(args)
    assert resumed["extracted"] == (0 if kind == "cache" else 12)
    assert verify_cache(cache_copy) == [] and len(rows_by_sha(cache_copy)) == 36


def test_a_write_failure_at_any_byte_never_crashes_and_keeps_the_cache(cache_copy, monkeypatch):
    """HDF5 follows whatever it reads back: after a failed write it must read what it wrote."""
    from pipeline.cache.format import find_caches, read_cache_info
    from pipeline.cache.segments import RowSource
    from pipeline.cache.writer import write_cache
    from pipeline.errors import CacheError

    info = read_cache_info(cache_copy)
    plan = [RowSource(cache_copy, row) for row in range(info.row_count)]
    view = {"classes": list(info.class_names), "relpath": list(info.images.relpath), "label": info.images.label,
            "split": info.images.split, "sha256": info.images.sha256, "row": info.images.row,
            "size": info.images.size, "mtime_ns": info.images.mtime_ns, "failures": []}
    before = rows_by_sha(cache_copy)
    size = cache_copy.stat().st_size
    for after_bytes in range(0, size * 3 // 4, max(1, size // 60)):  # the rewrite is a little smaller
        with monkeypatch.context() as patch:
            _inject_disk_full(patch, "cache", after_bytes)
            with pytest.raises(CacheError, match="the disk is full"):
                write_cache(cache_copy, {"format_note": "x"}, view, plan, info.feature_shape, info.spec.store_dtype)
    assert rows_by_sha(cache_copy) == before and find_caches(cache_copy.parent) == [cache_copy]


@pytest.mark.parametrize("free_bytes, failing_write", [
    (40_000, "could not commit finished rows"),  # room for one segment of the 60 new rows
    (260_000, "could not write cache"),  # room for every segment (~180 kB), not for the new cache too
])
def test_real_full_disk(small_disk, pristine, tmp_path, cli, free_bytes, failing_write):
    data = tmp_path / "pets"
    shutil.copytree(pristine[0], data)
    cache_dir = small_disk / "cache"
    args = ["extract", data, *TINY_CLI_ARGS, "--commit-every", "4", "--name", "pets", "--cache-dir", cache_dir]
    first, _ = cli.json(args)
    cache = Path(first["cache_path"])
    before = rows_by_sha(cache)
    _grow(data, 60)
    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * (free - free_bytes))

    payload, result = cli.json(args, expect_ok=False)
    assert result.exit_code == 1 and "the disk is full" in payload["error"], payload
    assert payload["error"].startswith(failing_write), payload
    assert verify_cache(cache) == [] and rows_by_sha(cache) == before
    assert not [p for p in cache_dir.rglob("*") if ".tmp" in p.name]
    kept = {sha for segment in partial_dir_of(cache).glob("*.h5") for sha in rows_by_sha(segment)}

    filler.unlink()
    resumed, _ = cli.json(args)
    assert resumed["extracted"] == 60 - len(kept), "rows committed before the disk filled are not redone"
    assert verify_cache(cache) == [] and len(rows_by_sha(cache)) == 84
    print(f"\nreal full disk: {payload['error']}\n{len(kept)} rows kept through the failure")


def test_a_head_sidecar_given_as_a_cache_is_named_for_what_it_is(tmp_path, cli):
    sidecar = tmp_path / "logreg-20260101-000000.json"
    sidecar.write_text(json.dumps({"format": "bottleneck-head", "kind": "logreg"}))
    for command in (["cache", "show", sidecar], ["fit-head", sidecar, "--head", "logreg"], ["report", sidecar]):
        payload, result = cli.json(command, expect_ok=False)
        assert result.exit_code == 1, command
        assert "is not a feature cache" in payload["error"] and "head's sidecar" in payload["error"]
        assert "cache rm" not in payload["error"], "never advise deleting a file that is not a cache"
    assert sidecar.exists()
