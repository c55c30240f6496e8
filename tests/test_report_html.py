"""`report --html`: a self-contained page, checked for content and in a real headless browser.

The browser test drives Debian's chromium through Playwright (`.ci/run` installs both); it is
skipped where either is missing. The screenshot it takes stays in the test's temporary folder.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import CLASS_COLOURS, TINY_CLI_ARGS, write_image

from pipeline.report.content import most_confused, report_content

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def fitted_cache(tmp_path, cli):
    """A small cache (one class name needing escaping) with three tool heads, a fused one and an outside one."""
    import numpy as np

    from pipeline import api

    root = tmp_path / "pets"
    names = {"cat": "cat <script>", "dog": "dog", "fox": "fox"}
    seed = 0
    for breed, folder in names.items():
        for split, count in (("train", 10), ("test", 4)):
            for index in range(count):
                seed += 1
                write_image(root / split / folder / f"{breed}_{index}.jpg", CLASS_COLOURS[breed], seed)
    payload, _ = cli.json(["extract", root, *TINY_CLI_ARGS, "--cache-dir", tmp_path / "cache"])
    cache = Path(payload["cache_path"])
    for kind in ("logreg", "svm", "mlp"):
        cli.json(["fit-head", cache, "--head", kind])
    lower, _ = cli.json(["extract", root, *TINY_CLI_ARGS, "--layer", "block4_pool", "--cache-dir", tmp_path / "cache"])
    cli.json(["fit-head", cache, lower["cache_path"], "--head", "logreg"])
    opened = api.open_cache(cache)
    _, y_test = opened.arrays("test")
    api.record(opened, "uniform", {"test": np.full((len(y_test), 3), 1 / 3)})
    return cache


def test_the_report_holds_every_head_escaped_and_without_network(fitted_cache, cli):
    payload, _ = cli.json(["report", fitted_cache, "--html"])
    page = Path(payload["html"]).read_text()
    assert Path(payload["html"]).name == fitted_cache.stem + ".report.html"
    for row in payload["heads"]:
        assert row["name"] in page
    assert "cat &lt;script&gt;" in page and "<script>" in page.replace("cat &lt;script&gt;", "")
    assert page.count("<script>") == 1, "only the page's own sorting script"
    assert not re.search(r'(src|href)="https?:', page), "the page loads nothing from the network"
    assert "no per-image predictions" in page  # the outside model has no model to replay
    cards = page.count('class="card"') + page.count('class="card misclassified"')
    # 3 tool heads + fusion (its member on this cache is the logreg head, not a copy)
    assert cards == 12 * 4, "top losses for every head with a model"


def test_top_losses_are_the_worst_test_images_first(fitted_cache):
    content = report_content(fitted_cache)
    for head in content["heads"]:
        losses = [item["loss"] for item in head.get("top_losses", [])]
        assert losses == sorted(losses, reverse=True)
        assert all(item["thumbnail"] and item["thumbnail"].startswith("data:image/jpeg;base64,")
                   for item in head.get("top_losses", []))
    assert {head["kind"] for head in content["heads"]} == {"logreg", "svm", "mlp", "fusion", "external"}
    assert content["cache"]["dataset"]["split_sizes"]["test"] == 12


def test_most_confused_pairs_rank_off_diagonal_cells():
    pairs = most_confused([[5, 2, 0], [0, 4, 3], [1, 0, 6]], ["a", "b", "c"], count=2)
    assert [(p["true"], p["predicted"], p["images"]) for p in pairs] == [("b", "c", 3), ("a", "b", 2)]
    assert pairs[0]["share_of_true"] == pytest.approx(3 / 7)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_the_page_loads_sorts_and_shows_thumbnails_in_a_real_browser(fitted_cache, cli, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (.ci/run installs it)")
    payload, _ = cli.json(["report", fitted_cache, "--html", tmp_path / "report.html"])
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            problems = []
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(Path(payload["html"]).as_uri())
            page.wait_for_load_state("load")
            assert problems == []

            def column(index: int) -> list[str]:
                return page.eval_on_selector_all(
                    f"#leaderboard tbody tr td:nth-child({index})", "cells => cells.map(c => c.dataset.value)")

            page.click("#leaderboard th:nth-child(9)")  # fit seconds, descending
            seconds = [float(v) for v in column(9)]
            assert seconds == sorted(seconds, reverse=True)
            page.click("#leaderboard th:nth-child(9)")  # again: ascending
            assert [float(v) for v in column(9)] == sorted(seconds)
            page.click("#leaderboard th:nth-child(1)")
            assert column(1) == sorted(column(1), reverse=True)
            page.eval_on_selector_all("details", "items => items.forEach(d => d.open = true)")
            widths = page.eval_on_selector_all(".top-losses img", "images => images.map(i => i.naturalWidth)")
            assert len(widths) == 12 * 4 and min(widths) > 0, "every thumbnail decodes"
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            assert problems == []
        finally:
            browser.close()
