"""The leaderboard's text table: head names whole, params wrapped at word boundaries, never cut."""

from __future__ import annotations

import re

from pipeline.report.leaderboard import PARAMS_WIDTH, format_table

LONG_NAME = "fine-tuned-conv_dw_13-20261206-022114-2"
LONG_PARAMS = "logreg late: efficientnet_lite0/block6d_add 0.3, mobilenet/conv_pw_13_relu 0.7"


def _row(name, params, valid=0.5):
    return {"name": name, "kind": "fusion", "params": params, "valid_top1": valid, "test_top1": 0.75,
            "test_top5": None, "test_mean_per_class_accuracy": 0.625, "fit_seconds": 1234.5}


def test_head_names_are_shown_whole_and_params_wrap_between_words():
    table = format_table([_row(LONG_NAME, LONG_PARAMS), _row("logreg-1", "C=1", 0.25)])
    lines = table.splitlines()
    assert lines[2].startswith(LONG_NAME + "  ")
    assert any(line.startswith("logreg-1 ") for line in lines)
    header = lines[0]
    start = header.index("params")
    params_lines = [line[start:header.index("valid")].strip() for line in lines[2:] if not line.startswith("logreg")]
    assert " ".join(params_lines) == LONG_PARAMS  # every word whole, in order, over continuation lines
    assert len(params_lines) > 1 and all(len(part) <= PARAMS_WIDTH for part in params_lines)
    figures = re.split(r"\s{2,}", lines[2][header.index("valid"):].strip())
    assert figures == ["0.500", "0.750", "-", "0.625", "1234.500"]
    assert all(line[:len(LONG_NAME)].strip() == "" for line in lines[3:len(params_lines) + 2])
