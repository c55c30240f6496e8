"""The background-work helper's contract (pipeline.data.background): order, bounded memory, errors
raised in the consumer with their own type, clean shutdown when the consumer stops early, and the
three users (decoding, the segment writer, fine-tuning's row reader) keeping it."""

from __future__ import annotations

import threading
import time
from typing import ClassVar

import numpy as np
import pytest

from pipeline.data.background import Background, read_ahead
from pipeline.errors import PipelineError

#: Long enough for a worker thread to run ahead if nothing bounded it.
SETTLE_SECONDS = 0.2


def _threads(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(name)]


def test_results_come_back_in_input_order_whatever_the_threads():
    def slow_for_small(n):  # early items finish last
        time.sleep(0.002 * (20 - n))
        return n * n

    assert list(read_ahead(slow_for_small, range(20), depth=6, workers=4, name="order")) == [n * n for n in range(20)]


def test_no_more_than_depth_items_are_computed_ahead():
    started = []

    def record(n):
        started.append(n)
        return n

    results = read_ahead(record, range(100), depth=3, workers=2, name="bounded")
    assert next(results) == 0
    time.sleep(SETTLE_SECONDS)
    assert len(started) <= 1 + 3  # the one handed out and at most `depth` in flight
    results.close()


def test_a_worker_error_is_raised_in_the_consumer_with_its_own_type_after_the_earlier_results():
    def fail_at_three(n):
        if n == 3:
            raise PipelineError("item 3 is unreadable")
        return n

    seen = []
    with pytest.raises(PipelineError, match="item 3 is unreadable"):
        for value in read_ahead(fail_at_three, range(10), depth=4, workers=2, name="errors"):
            seen.append(value)
    assert seen == [0, 1, 2]
    assert _threads("errors") == []


def test_tasks_after_a_failure_are_not_run():
    ran = []

    def fail_first(n):
        if n == 0:
            time.sleep(SETTLE_SECONDS / 4)
            raise OSError("disk full")
        ran.append(n)

    work = Background(depth=3, name="after-failure")
    for n in range(3):
        work.submit(fail_first, n)
    with pytest.raises(OSError, match="disk full"):
        work.finish()
    assert ran == []
    with pytest.raises(OSError, match="disk full"):  # asked again, the same failure, never a later result
        work.next_result()


def test_an_early_stop_drops_the_queued_work_and_ends_the_threads():
    started = []

    def slow(n):
        started.append(n)
        time.sleep(0.05)
        return n

    results = read_ahead(slow, range(1000), depth=4, workers=2, name="early-stop")
    assert [next(results), next(results)] == [0, 1]
    results.close()
    assert _threads("early-stop") == []
    count = len(started)
    time.sleep(SETTLE_SECONDS)
    assert len(started) == count < 10


def test_a_consumer_error_shuts_the_threads_down():
    def consume():
        for value in read_ahead(lambda n: n, range(1000), depth=4, workers=2, name="consumer-error"):
            if value == 5:
                raise KeyboardInterrupt

    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        consume()
    assert time.perf_counter() - started < 1
    assert _threads("consumer-error") == []


def test_finish_waits_for_every_task_in_order():
    written = []
    work = Background(depth=2, name="finish")
    for n in range(2):
        work.submit(lambda n: (time.sleep(0.01), written.append(n)), n)
    work.finish()
    assert written == [0, 1]
    assert _threads("finish") == []


def test_submitting_past_the_depth_is_refused():
    with Background(depth=1, name="refuse") as work:
        work.submit(time.sleep, 0)
        with pytest.raises(RuntimeError, match="collect a result"):
            work.submit(time.sleep, 0)


class _FailingSegments:
    """A SegmentWriter stand-in whose second add fails (a full disk); records what was written and flushed."""

    def __init__(self):
        self.added, self.flushed = [], False

    def add(self, shas, block):
        if len(self.added) == 1:
            raise OSError(28, "No space left on device")
        self.added.append(list(shas))

    def flush(self):
        self.flushed = True


def test_the_segment_writer_raises_a_failed_write_and_never_commits_after_it():
    from pipeline.extract.loop import BackgroundWriter

    segments = _FailingSegments()
    writer = BackgroundWriter(segments)
    with pytest.raises(OSError, match="No space left"):
        for n in range(10):
            writer.put([f"sha{n}"], np.zeros((1, 2)))
            time.sleep(0.01)
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    assert segments.added == [["sha0"]]
    assert segments.flushed is False


def test_the_segment_writer_commits_every_queued_batch_on_close():
    from pipeline.extract.loop import BackgroundWriter

    class Segments(_FailingSegments):
        def add(self, shas, block):
            time.sleep(0.01)
            self.added.append(list(shas))

    segments = Segments()
    writer = BackgroundWriter(segments)
    for n in range(6):
        writer.put([f"sha{n}"], np.zeros((1, 2)))
    writer.close()
    assert segments.added == [[f"sha{n}"] for n in range(6)]
    assert segments.flushed is True


class _Rows:
    """A RowReader stand-in: row r of the cache holds the value r; records whether it was closed."""

    opened: ClassVar[list] = []

    def __init__(self, path):
        self.closed = False
        _Rows.opened.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.closed = True

    def read(self, rows):
        return np.asarray(rows, dtype=np.float32)


def test_fine_tuning_batches_come_in_order_and_an_early_stop_closes_the_cache(monkeypatch, tmp_path):
    from pipeline.finetune import batches as module

    monkeypatch.setattr(module, "RowReader", _Rows)
    _Rows.opened.clear()
    split = module.SplitRows(rows=np.arange(40).reshape(20, 2), labels=np.arange(20))
    batches = module.scoring_batches(split, batch_size=3)
    times = module.StreamTimes()
    streamed = list(module.prefetched(tmp_path / "boundary.h5", batches, times))
    assert [features.tolist() for features, _ in streamed] == [batch.rows.tolist() for batch in batches]
    assert times.rows == 20 and _Rows.opened[-1].closed

    stream = module.prefetched(tmp_path / "boundary.h5", batches, module.StreamTimes())
    next(stream)
    stream.close()
    assert _Rows.opened[-1].closed
    assert _threads("row-reader") == []


def test_ctrl_c_while_waiting_for_a_result_leaves_once_the_running_tasks_end():
    import _thread

    def slow(n):
        time.sleep(0.3)
        return n

    threading.Timer(0.1, _thread.interrupt_main).start()  # Ctrl-C while the consumer waits for item 0
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        list(read_ahead(slow, range(100), depth=4, workers=2, name="ctrl-c"))
    assert time.perf_counter() - started < 1  # the two running tasks end; the queued ones never start
    assert _threads("ctrl-c") == []
