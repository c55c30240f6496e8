"""A fine-tuned model in `report` (text and --html), for every backbone `fine-tune --unfreeze` can cut.

The report replays each head on its cache to list the top losses; a fine-tuned model reads the
boundary layer's maps, so its replay must read the boundary cache, not the pooled rows of the
cache its head was fitted on. Random weights at 32x32 and one epoch keep it fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_BACKBONE, make_dataset

from pipeline.backbones.registry import BACKBONES
from pipeline.extract.options import ExtractOptions
from pipeline.extract.run import run_extract
from pipeline.finetune.cut import blocks_of
from pipeline.finetune.recipe import Recipe
from pipeline.finetune.run import FineTuneOptions, fine_tune
from pipeline.heads.fitting import fit_head

#: Every backbone with named blocks, so `--unfreeze` can cut it.
CUTTABLE = sorted(name for name, spec in BACKBONES.items() if spec.block_of is not None)
#: Every case builds a full-depth backbone three times (10-25 s a case on 2 CPU cores).
pytestmark = pytest.mark.slow


def _last_block(name: str) -> str:
    spec = BACKBONES[name]
    model = spec.build(include_top=False, weights=None, input_size=TINY_BACKBONE["input_size"])
    names = [layer.name for layer in model.layers]
    return blocks_of(spec, names[:names.index(spec.default_layer) + 1])[-1]


@pytest.mark.parametrize("backbone", CUTTABLE)
def test_report_renders_a_fine_tuned_model_and_replays_it_on_the_boundary_cache(backbone, tmp_path, cli):
    from pipeline.heads.replay import split_probabilities
    from pipeline.heads.store import read_sidecar
    from pipeline.report.content import report_content

    data = make_dataset(tmp_path / "pets", classes=("cat", "dog"), per_class=5)
    cache_dir = tmp_path / "cache"
    options = ExtractOptions(**TINY_BACKBONE, backbone=backbone, batch_size=8, valid_fraction=0.3)
    cache = Path(run_extract(data, cache_dir, options).cache_path)
    head = Path(fit_head(cache, "logreg").sidecar_path)
    tuned = fine_tune(cache, head, cache_dir, FineTuneOptions(unfreeze=_last_block(backbone),
                                                              recipe=Recipe(epochs=1, batch_size=4)))
    sidecar = read_sidecar(Path(tuned.sidecar_path))

    probabilities, labels, relpaths = split_probabilities(sidecar, cache, "test")
    assert probabilities.shape == (tuned.metrics["test"]["n"], 2)
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == labels))
    assert accuracy == pytest.approx(tuned.metrics["test"]["top1"], abs=1e-9)  # the rows it was scored on
    assert all(Path(relpath).parts[0] == "test" for relpath in relpaths)

    section = next(h for h in report_content(cache)["heads"] if h["name"] == sidecar.name)
    assert section["top_losses"] and section["top_losses"][0]["path"].startswith("test")

    text = cli(["report", cache])
    assert text.exit_code == 0, text.output
    assert sidecar.name in text.stdout
    html = cli(["report", cache, "--html", tmp_path / "report.html"])
    assert html.exit_code == 0, html.output
    page = (tmp_path / "report.html").read_text()
    assert sidecar.name in page and page.count("data:image") >= 1

    Path(tuned.boundary_cache).rename(tmp_path / "elsewhere.h5")  # e.g. removed to free space
    section = next(h for h in report_content(cache)["heads"] if h["name"] == sidecar.name)
    assert "top_losses" not in section and "boundary cache" in section["top_losses_note"]
    assert cli(["report", cache, "--html", tmp_path / "again.html"]).exit_code == 0
