"""How the CLI treats exceptions: user problems (exit 1), bad arguments (exit 2), bugs (exit 70)."""

from __future__ import annotations

import pytest

from pipeline.errors import EXIT_BUG, EXIT_USAGE, UsageError


def _break_report(monkeypatch, error: Exception):
    from pipeline.report import leaderboard

    def broken(_path):
        raise error

    monkeypatch.setattr(leaderboard, "leaderboard", broken)


def test_an_unexpected_exception_is_reported_as_a_bug(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("BOTTLENECK_DEBUG", raising=False)
    _break_report(monkeypatch, KeyError("images"))
    (tmp_path / "x.h5").write_bytes(b"")
    result = cli(["report", tmp_path / "x.h5"])
    assert result.exit_code == EXIT_BUG
    assert "internal error, a bug in this tool: KeyError" in result.stderr
    assert "BOTTLENECK_DEBUG=1" in result.stderr and "Traceback" not in result.output
    payload, result = cli.json(["report", tmp_path / "x.h5"], expect_ok=False)
    assert result.exit_code == EXIT_BUG and "a bug in this tool" in payload["error"]


def test_with_debug_set_the_bug_keeps_its_traceback(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECK_DEBUG", "1")
    _break_report(monkeypatch, KeyError("images"))
    (tmp_path / "x.h5").write_bytes(b"")
    with pytest.raises(KeyError):
        cli(["report", tmp_path / "x.h5"])


def test_a_usage_error_from_the_library_exits_2(cli, tmp_path, monkeypatch):
    _break_report(monkeypatch, UsageError("--top-k must be positive, got 0"))
    (tmp_path / "x.h5").write_bytes(b"")
    result = cli(["report", tmp_path / "x.h5"])
    assert result.exit_code == EXIT_USAGE and "--top-k must be positive" in result.stderr
    assert isinstance(UsageError("x"), ValueError), "bad arguments stay ValueErrors for library callers"


@pytest.mark.parametrize(("error", "expected"), [
    (ValueError("first\nsecond"), "first"),
    (ValueError("\n  padded line \nrest"), "padded line"),
    (KeyError(), "KeyError"),
    (OSError(""), "OSError"),
    ("", "no message"),
])
def test_first_line_of_an_error_never_fails_on_an_empty_message(error, expected):
    from pipeline.errors import first_line

    assert first_line(error) == expected
    assert first_line("", empty="none given") == "none given"


def test_a_weights_error_with_an_empty_message_is_still_reported(monkeypatch, tmp_path):
    from pipeline import quickstart
    from pipeline.errors import WeightsError

    def refuse(*_args):
        raise WeightsError("")

    monkeypatch.setattr(quickstart, "predict_imagenet", refuse)
    predictions, why = quickstart.sample_photo_predictions(tmp_path)
    assert predictions is None
    assert why.startswith("no ImageNet classifier is available offline (") and ": WeightsError" in why
