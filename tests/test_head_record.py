"""The head record (`pipeline.heads.record`): sidecars read into one typed value and written back unchanged.

`tests/fixtures/head-format-2/` holds sidecars written by the tool before the record existed (commit
708bdca): a logreg head, a k-NN head with views and TTA scores, an early-fused head and one of its
members, an outside model's results and a fine-tuned model. Their model files are not there: these
tests are about the JSON only.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import fields, replace
from pathlib import Path

import pytest

from pipeline.cache.key import FeatureSpec
from pipeline.errors import HeadError
from pipeline.heads.record import HEAD_FORMAT_VERSION, UNWRITTEN, ConcatHead, FusedMember, HeadRecord, written_fields
from pipeline.heads.registry import SAVED_KINDS
from pipeline.heads.store import load_head, read_sidecar, write_sidecar

FIXTURES = Path(__file__).parent / "fixtures" / "head-format-2"
SIDECARS = sorted(FIXTURES.glob("*.json"))


def _document(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", SIDECARS, ids=lambda path: path.stem)
def test_a_format_2_sidecar_reads_and_writes_back_the_same_document(path, tmp_path):
    record = read_sidecar(path)
    assert record.path == path and record.format_version == HEAD_FORMAT_VERSION
    assert json.loads(json.dumps(record.to_json())) == _document(path)
    written = write_sidecar(tmp_path / path.stem, record)
    assert _document(written) == _document(path)
    assert read_sidecar(written) == record, "the path it was read from is not part of the value"
    assert "_path" not in _document(written)


def test_the_record_holds_typed_values():
    logreg = read_sidecar(FIXTURES / "logreg.json")
    raw = _document(FIXTURES / "logreg.json")
    assert isinstance(logreg.feature_spec, FeatureSpec) and logreg.feature_spec.key() == logreg.feature_key
    assert logreg.class_names == tuple(raw["class_names"]) and logreg.pooling == raw["head_pooling"]
    assert logreg.metrics == raw["metrics"] and logreg.hyperparameters == raw["hyperparameters"]
    assert logreg.cache_path == raw["cache"]["path"] and logreg.stem == FIXTURES / "logreg"
    fused = read_sidecar(FIXTURES / "fusion-early.json")
    assert fused.feature_spec is None and len(fused.members) == 2
    assert all(isinstance(member, FusedMember) for member in fused.members)
    members = _document(FIXTURES / "fusion-early.json")["members"]
    assert [m.weight for m in fused.members] == [m["weight"] for m in members]
    assert isinstance(fused.concat_head, ConcatHead) and fused.concat_head.kind == "logreg"
    member = read_sidecar(FIXTURES / "fusion-member.json")
    assert member.member_of == (fused.name,)
    tuned = read_sidecar(FIXTURES / "fine-tuned.json")
    assert tuned.target is None and tuned.pooling is None and tuned.warning is None
    fine_tuning = _document(FIXTURES / "fine-tuned.json")["fine_tuning"]
    assert tuned.boundary_cache == fine_tuning["boundary_cache"]
    assert tuned.tuned_from == fine_tuning["from_head"]["name"] and logreg.tuned_from is None
    assert read_sidecar(FIXTURES / "external.json").external_name == "my model"


def test_every_attribute_is_written_under_its_key():
    attributes = {f.name for f in fields(HeadRecord)}
    assert set(written_fields()) == attributes - UNWRITTEN
    assert written_fields()["pooling"] == "head_pooling"


def test_test_time_augmentation_views_are_recorded_and_checked(tmp_path):
    path = tmp_path / "logreg.json"
    path.write_text(json.dumps({**_document(FIXTURES / "logreg.json"), "tta_views": [0, 1, 2]}))
    record = read_sidecar(path)
    assert record.tta_views == (0, 1, 2)
    assert _document(write_sidecar(tmp_path / "again", record))["tta_views"] == [0, 1, 2]
    assert "tta_views" not in _document(write_sidecar(tmp_path / "plain", replace(record, tta_views=None)))
    for bad in ([0, "one"], [-1], [True], "0,1"):
        path.write_text(json.dumps({**_document(FIXTURES / "logreg.json"), "tta_views": bad}))
        with pytest.raises(HeadError, match="tta_views should be"):
            read_sidecar(path)


def test_a_late_fused_head_records_no_concatenated_head(tmp_path):
    late = replace(read_sidecar(FIXTURES / "fusion-early.json"), concat_head=None, model_file=None)
    document = _document(write_sidecar(tmp_path / "late", late))
    assert document["concat_head"] is None and document["model_file"] is None


def test_a_member_weight_that_is_not_a_number_is_refused(tmp_path):
    document = _document(FIXTURES / "fusion-early.json")
    document["members"][0]["weight"] = "heavy"
    path = tmp_path / "fused.json"
    path.write_text(json.dumps(document))
    with pytest.raises(HeadError, match="members should be objects naming their sidecar and weight"):
        read_sidecar(path)


@pytest.mark.parametrize("kind", [kind for kind, entry in SAVED_KINDS.items() if not entry.has_model])
def test_kinds_without_a_model_are_registry_entries_that_refuse_loading(kind, tmp_path):
    source = FIXTURES / ("fusion-early.json" if kind == "fusion" else f"{kind}.json")
    shutil.copy(source, tmp_path / source.name)
    entry = SAVED_KINDS[kind]
    assert entry.module is None and not entry.differentiable
    with pytest.raises(HeadError, match=r"fuses several backbones|outside this tool") as refused:
        load_head(tmp_path / source.name)
    assert str(tmp_path / source.name) in str(refused.value)
