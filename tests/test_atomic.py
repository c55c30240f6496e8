"""Every file the tool writes appears whole or not at all (`pipeline.atomic`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import atomic
from pipeline.atomic import TEMP_MARK, atomic_write_path, write_text_atomically


def test_a_finished_write_replaces_the_file_and_syncs_file_and_folder(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(atomic, "fsync_file", lambda path: synced.append(("file", Path(path))))
    monkeypatch.setattr(atomic, "fsync_folder", lambda path: synced.append(("folder", Path(path))))
    final = tmp_path / "out" / "head.json"
    write_text_atomically(final, "new")
    assert final.read_text() == "new"
    assert [kind for kind, _ in synced] == ["file", "folder"]
    assert synced[0][1].name.startswith(".head.json.tmp") and synced[1][1] == final.parent
    assert sorted(p.name for p in final.parent.iterdir()) == ["head.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    final = write_text_atomically(tmp_path / "model.npz", "old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_write_path(final) as temp:
            assert temp.suffix == ".npz" and TEMP_MARK in temp.name  # writers that pick formats by suffix work
            temp.write_text("half of the new")
            raise OSError("disk full")
    assert final.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_fit_head_writes_every_file_atomically(tmp_path, tiny_dataset, tiny_options, monkeypatch):
    from pipeline.extract.run import run_extract
    from pipeline.heads.fitting import fit_head

    cache = Path(run_extract(tiny_dataset, tmp_path / "cache", tiny_options).cache_path)
    renamed = []
    real_replace = os.replace

    def replace(source, destination):
        renamed.append(Path(destination).name)
        real_replace(source, destination)

    monkeypatch.setattr(atomic.os, "replace", replace)
    for kind in ("logreg", "gap-dense"):
        report = fit_head(cache, kind)
        assert set(report.files) <= set(renamed), f"{kind}: {set(report.files) - set(renamed)} not written atomically"


def test_a_folder_is_swapped_in_whole_and_a_failed_write_leaves_the_old_one(tmp_path):
    from pipeline.atomic import atomic_write_dir

    final = tmp_path / "saved_model"
    with atomic_write_dir(final) as temp:
        assert temp.is_dir() and TEMP_MARK in temp.name and temp.parent == tmp_path
        (temp / "variables").mkdir()
        (temp / "variables" / "data").write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_write_dir(final) as temp:
            (temp / "half").write_text("new")
            raise OSError("disk full")
    assert (final / "variables" / "data").read_text() == "old" and not (final / "half").exists()
    with atomic_write_dir(final) as temp:
        (temp / "new").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]
