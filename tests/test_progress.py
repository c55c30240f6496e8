"""Progress on stderr: a bar on a terminal, plain lines every few seconds anywhere else (log files, CI)."""

from __future__ import annotations

import io

from pipeline.cli.plumbing import PLAIN_PROGRESS_SECONDS, ExtractProgress


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_a_plain_line_every_few_seconds_and_at_the_end():
    stream, clock = io.StringIO(), FakeClock()
    progress = ExtractProgress(stream=stream, clock=clock)
    progress(0, 1000)  # the first update prints at once: a log shows the run started
    for done in range(10, 1000, 10):  # one update per second of fake time
        clock.now += 1.0
        progress(done, 1000)
    clock.now += 1.0
    progress(1000, 1000)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "extracting 0/1000 (0.0%)"
    assert lines[1] == "extracting 50/1000 (5.0%), 10.0 img/s, about 2 min left"  # 95 s
    assert lines[-1] == "extracting 1000/1000 (100.0%), 10.0 img/s"
    assert len(lines) == 1 + 100 // int(PLAIN_PROGRESS_SECONDS), lines  # the start, then every 5 s over 100 s
    assert "\r" not in stream.getvalue() and "[" not in stream.getvalue()  # no bar redrawn into the file


def test_long_runs_say_minutes_or_hours_left():
    stream, clock = io.StringIO(), FakeClock()
    progress = ExtractProgress("decoding", stream=stream, clock=clock)
    progress(0, 100_000)
    clock.now += 10.0
    progress(10, 100_000)
    assert stream.getvalue().splitlines()[-1] == "decoding 10/100000 (0.0%), 1.0 img/s, about 27.8 h left"


def test_a_terminal_gets_the_bar():
    stream = Terminal()
    progress = ExtractProgress(stream=stream)
    progress(5, 10)
    progress(10, 10)
    progress.close()
    assert "extracting" in stream.getvalue() and "10/10" in stream.getvalue()
    assert "(100.0%)" not in stream.getvalue()


def test_the_rate_counts_from_the_first_update_not_from_the_batch_before_it():
    stream, clock = io.StringIO(), FakeClock()
    progress = ExtractProgress(stream=stream, clock=clock)
    progress(32, 320)  # the first update comes after a whole batch, whose time the progress never saw
    clock.now += PLAIN_PROGRESS_SECONDS
    progress(64, 320)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "extracting 32/320 (10.0%)"  # no rate, no time left: nothing was timed yet
    assert lines[1] == "extracting 64/320 (20.0%), 6.4 img/s, about 40 s left"  # 32 images in 5 s
