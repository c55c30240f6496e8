"""Reliability, interruptions at exact points: every intermediate state opens, verifies and resumes.

Random kills (test_reliability_kill.py) rarely land inside the short consolidation window, so
here the crash points are forced. A SIGKILL is simulated by copying the cache folder at every
step that changes files on disk (mid-write, before and after each rename, before and after the
segments are removed); each copy must verify (when it holds a cache file) and resume to rows
bitwise equal to a clean run. A Ctrl-C (KeyboardInterrupt) is injected at the same steps, and
resuming after it must give the same result.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import CLASS_COLOURS, TINY_BACKBONE, make_dataset, write_image
from reliability_support import only_cache, patch_h5_writes, rows_by_sha

from pipeline.cache import builder as cache_builder
from pipeline.cache.format import partial_dir_of
from pipeline.cache.verify import verify_cache
from pipeline.extract.run import run_extract

#: Commit a segment every 8 rows, so the 16 new images of the extension make 2 segments.
COMMIT_ROWS = 8


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A base dataset (24 images) and the same plus 16 more: the extension a crash interrupts."""
    root = tmp_path_factory.mktemp("crash")
    base = make_dataset(root / "base")
    grown = make_dataset(root / "grown")
    for index in range(8):
        for name in ("cat", "dog"):
            write_image(grown / "train" / name / f"new_{index}.jpg", CLASS_COLOURS[name], seed=500 + index + len(name))
    return base, grown


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    from pipeline.extract.options import ExtractOptions

    return ExtractOptions(**TINY_BACKBONE, batch_size=4, valid_fraction=0.3, commit_rows=COMMIT_ROWS, name="pets")


@pytest.fixture(scope="module")
def clean_rows(datasets, options, tmp_path_factory) -> dict[str, bytes]:
    summary = run_extract(datasets[1], tmp_path_factory.mktemp("clean"), options)
    return rows_by_sha(Path(summary.cache_path))


@pytest.fixture(scope="module")
def base_cache(datasets, options, tmp_path_factory) -> Path:
    """A cache folder holding the finished base extraction (copied by each test)."""
    folder = tmp_path_factory.mktemp("base-cache")
    run_extract(datasets[0], folder, options)
    return folder


class Snapshots:
    """Copies of a cache folder taken at named moments (what a SIGKILL at that moment leaves)."""

    def __init__(self, source: Path, store: Path):
        self.source, self.store, self.names = source, store, []

    def take(self, moment: str) -> None:
        target = self.store / f"{len(self.names):02d}"
        shutil.copytree(self.source, target, symlinks=True)
        self.names.append((moment, target))


def _instrument(monkeypatch, on_step):
    """Call `on_step(moment)` at every step where the cache writers change files on disk.

    Segment commits run in the writer thread; the main thread changes no files meanwhile, so
    a copy taken there is exactly what a kill at that moment leaves.
    """
    remove_partial = cache_builder.remove_partial

    def write(write_atomically, final, fill):
        kind = "segment" if final.parent.name.endswith(".partial") else "cache"

        def fill_and_pause(handle, check):
            fill(handle, check)
            handle.flush()
            on_step(f"{kind} {final.name[:12]}: temp file written, not renamed")
        write_atomically(final, fill_and_pause)
        on_step(f"{kind} {final.name[:12]}: renamed into place")

    def remove(cache_path):
        on_step("cache written, segments not yet removed")
        remove_partial(cache_path)
        on_step("segments removed")

    patch_h5_writes(monkeypatch, write)
    monkeypatch.setattr(cache_builder, "remove_partial", remove)


def _resume_and_compare(folder: Path, data_dir: Path, options, clean_rows: dict, moment: str) -> int:
    cache = only_cache(folder)
    if cache is not None:
        assert verify_cache(cache) == [], f"cache fails verify when killed at: {moment}"
    summary = run_extract(data_dir, folder, options)
    final = Path(summary.cache_path)
    assert verify_cache(final) == []
    assert not partial_dir_of(final).exists() and not [p for p in folder.iterdir() if ".tmp" in p.name], moment
    rows = rows_by_sha(final)
    assert rows.keys() == clean_rows.keys(), moment
    assert all(rows[sha] == clean_rows[sha] for sha in rows), f"rows differ from a clean run after a kill at: {moment}"
    return summary.extracted


def test_a_kill_at_every_step_of_an_extension_resumes_identically(datasets, options, clean_rows, base_cache,
                                                                  tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    shutil.copytree(base_cache, folder)
    snapshots = Snapshots(folder, tmp_path / "snapshots")
    with monkeypatch.context() as patch:
        _instrument(patch, snapshots.take)
        run_extract(datasets[1], folder, options)
    moments = [moment for moment, _ in snapshots.names]
    assert sum(m.startswith("segment") and m.endswith("renamed into place") for m in moments) == 2, moments
    assert "cache written, segments not yet removed" in moments
    extracted = [_resume_and_compare(copy, datasets[1], options, clean_rows, moment)
                 for moment, copy in snapshots.names]
    assert extracted[0] == 16, "killed before any commit: all 16 new images are extracted again"
    assert extracted[-1] == 0, "killed after the last step: nothing left to do"
    assert sorted(extracted, reverse=True) == extracted, "the later the kill, the less is redone"


@pytest.mark.parametrize("step", ["segment commit", "cache write", "before removing segments"])
def test_ctrl_c_at_each_step_leaves_a_resumable_cache(datasets, options, clean_rows, base_cache, tmp_path,
                                                      monkeypatch, step):
    folder = tmp_path / "cache"
    shutil.copytree(base_cache, folder)
    before = rows_by_sha(only_cache(folder))

    def interrupt(moment):
        if ((step == "segment commit" and moment.startswith("segment") and "not renamed" in moment)
                or (step == "cache write" and moment.startswith("cache") and "not renamed" in moment)
                or (step == "before removing segments" and moment == "cache written, segments not yet removed")):
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        _instrument(patch, interrupt)
        with pytest.raises(KeyboardInterrupt):
            run_extract(datasets[1], folder, options)
    cache = only_cache(folder)
    assert verify_cache(cache) == []
    assert not [p for p in folder.iterdir() if ".tmp" in p.name] and not list(folder.glob("*.partial/*.tmp"))
    if step != "before removing segments":
        assert rows_by_sha(cache) == before, "the previous cache is untouched"
    extracted = _resume_and_compare(folder, datasets[1], options, clean_rows, step)
    assert extracted == {"segment commit": 16, "cache write": 0, "before removing segments": 0}[step]


def test_resume_is_identical_when_missing_rows_are_not_a_batch_aligned_run(datasets, options, clean_rows, tmp_path,
                                                                            monkeypatch):
    """Rows are computed at their own batch slot, so any subset resumes to the clean bytes.

    Two ways the rows still missing can be scattered: a segment of the middle of the run is
    lost, and a file that failed to decode is repaired before the next run.
    """
    folder = tmp_path / "cache"
    interrupted = replace(options, commit_rows=COMMIT_ROWS // 2)
    with pytest.raises(KeyboardInterrupt):
        _interrupt_after_segments(monkeypatch, datasets[1], folder, interrupted, segments=5)
    segments = sorted(next(folder.glob("*.partial")).iterdir())
    segments[1].unlink()  # rows 4..7 of the run are gone; 0..3 and 8..19 remain
    assert _resume_and_compare(folder, datasets[1], options, clean_rows, "middle segment lost") == 40 - 16

    broken = tmp_path / "broken"
    shutil.copytree(datasets[1], broken)
    victim = sorted((broken / "train" / "cat").glob("*.jpg"))[3]
    good_bytes = victim.read_bytes()
    victim.write_bytes(good_bytes[: len(good_bytes) // 3])
    other = tmp_path / "cache-broken"
    first = run_extract(broken, other, replace(options, name="pets"))
    assert [f["path"] for f in first.failures] == [victim.relative_to(broken).as_posix()]
    victim.write_bytes(good_bytes)
    assert _resume_and_compare(other, broken, replace(options, name="pets"), clean_rows, "repaired file") == 1


def _interrupt_after_segments(monkeypatch, data_dir, folder, options, segments: int):
    """Run extract and raise KeyboardInterrupt once `segments` segments are committed."""
    committed = []
    def counting(original, final, fill):
        original(final, fill)
        if final.parent.name.endswith(".partial"):
            committed.append(final)
            if len(committed) >= segments:
                raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch_h5_writes(patch, counting)
        run_extract(data_dir, folder, options)


def test_ctrl_c_mid_extraction_commits_the_rows_still_buffered(datasets, options, clean_rows, tmp_path):
    """Rows wait in memory until a segment fills up; an interruption commits them before exiting."""
    folder = tmp_path / "cache"
    buffered_only = replace(options, commit_rows=None)  # 32 MB per segment: nothing is committed before the end

    def interrupt_after_three_batches(done, total):
        if done >= 3 * options.batch_size:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_extract(datasets[1], folder, buffered_only, progress=interrupt_after_three_batches)
    segments = list(next(folder.glob("*.partial")).glob("*.h5"))
    assert len(segments) == 1 and len(rows_by_sha(segments[0])) == 3 * options.batch_size
    assert _resume_and_compare(folder, datasets[1], options, clean_rows, "Ctrl-C mid-extraction") == 40 - 12


def test_every_image_keeps_its_place_whatever_subset_is_planned():
    """The batch layout of an image depends only on its ordinal, the dataset size and the batch size."""
    from pipeline.cache.slots import plan_batches

    ordinals = {f"sha{n:03d}": n for n in range(23)}  # 23 images, batches of 5: 4 full batches and a tail of 3
    items = [(sha, Path(sha)) for sha in ordinals]

    def places(plan):
        return {sha: (batch.size, slot) for batch in plan for slot, sha, _ in batch.entries}

    fresh = plan_batches(items, ordinals, 5)
    assert [(b.size, [sha for _, sha, _ in b.entries]) for b in fresh] == \
        [(5, [f"sha{n:03d}" for n in range(k, k + 5)]) for k in range(0, 20, 5)] \
        + [(3, ["sha020", "sha021", "sha022"])], \
        "a fresh run computes exactly the batches plain chunking would"
    for subset in (items[7:], items[::3], items[1:2] + items[21:], list(reversed(items))):
        assert places(plan_batches(subset, ordinals, 5)) == {sha: places(fresh)[sha] for sha, _ in subset}
    assert len(plan_batches(items[7:], ordinals, 5)) == 4, "a tail left by an interruption packs tightly"
