"""The writer lock leaves no `.lock` file behind and stays exclusive although its file is deleted on release."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.cache.format import lock_path_of
from pipeline.cache.lock import CacheLock, _names_this_file
from pipeline.errors import CacheLockedError

#: Long enough for a waiting thread to block in flock before the holder releases.
SETTLE_SECONDS = 0.3


def test_a_released_lock_leaves_no_file(tmp_path):
    cache = tmp_path / "pets.h5"
    with CacheLock(cache):
        assert "pid " in lock_path_of(cache).read_text()
    assert not lock_path_of(cache).exists()


def test_a_file_deleted_or_replaced_after_opening_is_not_the_lock(tmp_path):
    path = tmp_path / "x.lock"
    with open(path, "a+") as handle:
        assert _names_this_file(path, handle)
        path.unlink()
        assert not _names_this_file(path, handle)
        path.write_text("a newcomer's lock file")
        assert not _names_this_file(path, handle)


def test_a_waiter_that_locked_the_deleted_file_starts_over_and_stays_exclusive(tmp_path):
    cache = tmp_path / "pets.h5"
    inside, events = threading.Event(), []

    def waiter():
        with CacheLock(cache, wait=True):
            events.append("waiter in")
            inside.set()
            time.sleep(SETTLE_SECONDS)
            events.append("waiter out")

    with CacheLock(cache):
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(SETTLE_SECONDS)  # the waiter now blocks in flock on the file we are about to delete
    assert inside.wait(timeout=10)
    with pytest.raises(CacheLockedError, match="being written by another extract"):
        with CacheLock(cache):  # the waiter re-locked the file the path names, so a newcomer is refused
            pass
    thread.join(timeout=10)
    assert events == ["waiter in", "waiter out"] and not lock_path_of(cache).exists()
