"""`audit` and `neighbours` end to end on small planted sets (tiny random-weight backbone), the report's
audit section and its map in headless Chromium, and (realdata) the finders on real photos with genuine VGG16."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import CLASS_COLOURS, TINY_CLI_ARGS, write_image
from PIL import Image, ImageOps

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _cli_json(runner, args) -> dict:
    from cli import main

    result = runner.invoke(main, [str(a) for a in args] + ["--json"], catch_exceptions=False)
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["ok"], payload
    return payload


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A 3-class generic dataset whose test split holds a re-compressed copy of a training image; extracted,
    a logreg head fitted and audited once: (cache, audit payload) for every test of the module.

    Random-weight features of these flat noisy images make most same-colour pairs near-duplicates, so
    these tests check the plumbing; tests/test_audit.py and the realdata test below check the finders."""
    from click.testing import CliRunner

    folder = tmp_path_factory.mktemp("audit")
    root = folder / "pets"
    seed = 0
    for breed in ("cat", "dog", "fox"):
        for split, count in (("train", 10), ("test", 4)):
            for index in range(count):
                seed += 1
                write_image(root / split / breed / f"{breed}_{index}.jpg", CLASS_COLOURS[breed], seed, size=(48, 48))
    original = root / "train" / "dog" / "dog_3.jpg"
    Image.open(original).save(root / "test" / "dog" / "dog_copy.jpg", quality=60)
    runner = CliRunner()
    cache = Path(_cli_json(runner, ["extract", root, *TINY_CLI_ARGS, "--cache-dir", folder / "cache"])["cache_path"])
    _cli_json(runner, ["fit-head", cache, "--head", "logreg"])
    return cache, _cli_json(runner, ["audit", cache])


def test_audit_finds_the_planted_copy_saves_its_record_and_scores_heads_without_it(planted, cli):
    from pipeline.audit.leakage import score_line

    cache, payload = planted
    pairs = {frozenset((pair["a"], pair["b"])): pair for pair in payload["near_duplicates"]}
    copy = pairs.get(frozenset(("train/dog/dog_3.jpg", "test/dog/dog_copy.jpg")))
    assert copy is not None and copy["similarity"] >= payload["near_duplicate_similarity"]
    assert sorted(copy["splits"]) == ["test", "train"]
    assert "test/dog/dog_copy.jpg" in payload["leaked_test"]
    assert payload["hashed"] == payload["images"] == 43 and copy["hash_distance"] <= payload["max_hash_distance"]
    assert {"label_issues", "outliers", "map"} <= set(payload)
    assert len(payload["map"]["points"]) == 43 and payload["map"]["classes"] == ["cat", "dog", "fox"]
    assert Path(payload["record"]).is_file()
    [score] = payload["leakage_aware"]
    assert score["removed"] == len(payload["leaked_test"]) and score["n"] == 13 - score["removed"]

    report, _ = cli.json(["report", cache])
    assert report["leakage_aware"][0]["removed"] == score["removed"]
    text = cli(["report", cache]).stdout
    assert "Leakage" in text and score_line(report["leakage_aware"][0]) in text


def test_audit_text_lists_each_finder_and_a_stale_record_is_not_shown(planted, cli, tmp_path):
    cache, _ = planted
    from pipeline.audit.record import record_path

    path = record_path(cache)
    kept = path.read_text()
    try:
        result = cli(["audit", cache, "--no-map"])
        assert result.exit_code == 0, result.output
        for heading in ("Near-duplicates", "Label issues", "Outliers", "Saved "):
            assert heading in result.stdout
        path.write_text(json.dumps({**json.loads(kept), "cache_updated": "an older extraction"}))
        payload, _ = cli.json(["report", cache, "--html", tmp_path / "stale.html"])
        assert "older than the cache" in Path(payload["html"]).read_text()
        assert payload["leakage_aware"] == [] and "Leakage" not in cli(["report", cache]).stdout
    finally:
        path.write_text(kept)


def test_the_python_api_audits_like_the_command(planted):
    from pipeline import api
    from pipeline.audit.record import record_path

    cache, payload = planted
    kept = record_path(cache).read_text()
    try:
        result = api.audit(cache.parent, with_map=False)
        assert result.cache == cache and result.map == {}
        assert [pair.to_dict() for pair in result.near_duplicates] == payload["near_duplicates"]
        assert result.to_dict()["leaked_test"] == payload["leaked_test"]
    finally:
        record_path(cache).write_text(kept)


def test_audit_refuses_what_is_not_a_cache(cli, tmp_path):
    other = tmp_path / "notes.h5"
    other.write_bytes(b"not hdf5")
    _payload, result = cli.json(["audit", other], expect_ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_neighbours_finds_a_cached_image_first_at_similarity_one_and_draws_the_strip(planted, cli, tmp_path):
    planted, _ = planted
    from pipeline.cache.format import read_cache_info

    query = read_cache_info(planted).data_root / "train" / "fox" / "fox_2.jpg"
    strip = tmp_path / "strip.png"
    payload, _ = cli.json(["neighbours", query, "--cache", planted, "-k", "4", "--png", strip,
                           "--cache-dir", planted.parent])
    first = payload["neighbours"][0]
    assert first["path"] == "train/fox/fox_2.jpg" and first["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert len(payload["neighbours"]) == 4
    assert [n["similarity"] for n in payload["neighbours"]] == sorted((n["similarity"] for n in payload["neighbours"]),
                                                                     reverse=True)
    with Image.open(strip) as image:
        assert image.format == "PNG" and image.width > 2 * image.height, "one row: the query and its 4 neighbours"
    text = cli(["neighbours", query, "--cache", "pets", "-k", "2", "--cache-dir", planted.parent]).stdout  # a spec
    assert "train/fox/fox_2.jpg" in text and "1.000" in text


def test_the_report_shows_the_audit_section_with_its_map(planted, cli, tmp_path):
    planted, _ = planted
    payload, _ = cli.json(["report", planted, "--html", tmp_path / "report.html"])
    page = Path(payload["html"]).read_text()
    assert 'id="audit-map"' in page and 'id="leakage"' in page and "dog_copy.jpg" in page
    assert "near-duplicate pairs at cosine &ge; 0.85 or pixel hash distance &le; 8" in page
    assert re.search(r"cos \d\.\d{3} · hash \d+/64 · ", page), "each pair card shows its hash distance"
    data = page.split('<script type="application/json" id="audit-data">', 1)[1].split("</script>", 1)[0]
    chart = json.loads(data)
    assert len(chart["points"]) == 43 and len(chart["thumbnails"]) == 43


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_the_map_draws_shows_a_thumbnail_on_hover_and_highlights_a_class_in_a_real_browser(planted, cli, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (.ci/run installs it)")
    planted, _ = planted
    payload, _ = cli.json(["report", planted, "--html", tmp_path / "report.html"])
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            problems = []
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(Path(payload["html"]).as_uri())
            page.wait_for_load_state("load")
            canvas = page.locator("#audit-map")
            canvas.scroll_into_view_if_needed()
            drawn = page.evaluate("() => { var c = document.getElementById('audit-map'); var d = c.getContext('2d')"
                                  ".getImageData(0, 0, c.width, c.height).data; var n = 0;"
                                  " for (var i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }")
            assert drawn > 43 * 9, "every point is painted"
            chart = json.loads(page.inner_text("#audit-data"))
            index = next(i for i, point in enumerate(chart["points"]) if point[3] == "test/dog/dog_copy.jpg")
            x, y = chart["points"][index][:2]
            box = canvas.bounding_box()
            margin = 12
            page.mouse.move(box["x"] + margin + x * (box["width"] - 2 * margin),
                            box["y"] + margin + (1 - y) * (box["height"] - 2 * margin))
            assert page.inner_text("#audit-tip-label") == "dog"
            assert "near-duplicate" in page.inner_text("#audit-tip")
            assert page.evaluate("() => document.getElementById('audit-tip-image').naturalWidth") > 0
            page.fill("#audit-search", "fox")
            assert page.inner_text("#audit-status").startswith("14 of 43")
            page.locator("#audit").screenshot(path=str(tmp_path / "audit.png"))
            assert problems == []
        finally:
            browser.close()


def _planted_real_photos(data: Path, root: Path) -> dict:
    """dogImages' 4 breeds as they are, plus a resized, a re-compressed, a cropped and a mirrored copy of four
    training photos in test, and two training photos moved to another breed (a German shepherd to golden
    retriever, a Maltese to Saint Bernard)."""
    shutil.copytree(data / "dogimages-mini", root)
    train = sorted((root / "train").rglob("*.jpg"))
    copies = {}
    for number, transform in enumerate(("resized", "recompressed", "cropped", "mirrored")):
        source = train[number * 12 + 1]  # one photo of each breed (12 training photos per breed)
        image = Image.open(source).convert("RGB")
        quality = 90
        if transform == "resized":
            image = image.resize((image.width // 2, image.height // 2))
        elif transform == "recompressed":
            quality = 25
        elif transform == "cropped":
            dx, dy = image.width // 12, image.height // 12
            image = image.crop((dx, dy, image.width - dx, image.height - dy))
        else:
            image = ImageOps.mirror(image)
        target = root / "test" / source.parent.name / f"{source.stem}_{transform}.jpg"
        image.save(target, quality=quality)
        copies[f"train/{source.parent.name}/{source.name}"] = f"test/{source.parent.name}/{target.name}"
    moved = []
    for source, other in ((train[5], train[20].parent), (train[30], train[40].parent)):
        source.rename(other / source.name)
        moved.append(f"train/{other.name}/{source.name}")
    return {"copies": copies, "moved": moved}


@pytest.mark.realdata
def test_real_photos_planted_copies_are_found_other_photos_of_a_breed_are_not(shared_data, tmp_path, cli):
    truth = _planted_real_photos(shared_data, tmp_path / "dogs")
    payload, _ = cli.json(["extract", tmp_path / "dogs", "--cache-dir", tmp_path / "cache", "--precision", "float32"])
    cache = payload["cache_path"]
    audit, _ = cli.json(["audit", cache, "--no-map"])
    found = {(pair["a"], pair["b"]) if pair["a"].startswith("train") else (pair["b"], pair["a"])
             for pair in audit["near_duplicates"]}
    assert found == set(truth["copies"].items()), "every planted copy, and no two different photos"
    assert sorted(audit["leaked_test"]) == sorted(truth["copies"].values())
    flagged = [issue["path"] for issue in audit["label_issues"]]
    assert flagged[0] == truth["moved"][0], "the German shepherd filed as a golden retriever comes first"
    # The Maltese filed as a Saint Bernard is missed (docs/audit.md): out-of-fold p(Saint Bernard) is 0.03, but
    # p(Maltese) 0.68 stays under the Maltese threshold 0.87, so confident learning does not count it.
    assert [outlier["path"] for outlier in audit["outliers"]] == [
        "train/002.golden_retriever/golden_retriever_2099601_6577.jpg"], "a van with a dog in its window, only"

    dropped, _ = cli.json(["extract", tmp_path / "dogs", "--cache-dir", tmp_path / "cache", "--precision", "float32",
                           "--drop-cross-split-duplicates"])
    assert dropped["extracted"] == 0, "the features are reused: only the near-duplicate pass runs"
    assert {(drop["near"], drop["path"]) for drop in dropped["near_duplicates_dropped"]} == set(truth["copies"].items())
