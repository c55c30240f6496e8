"""Every registered head keeps the head contract (`pipeline.heads.kinds.base`), recipe by recipe.

Parametrised over `pipeline.heads.registry.HEADS`, so a new head is held to it the moment it is
registered: fit returns self with JSON-able params and search, honest validation probabilities,
probabilities that are distributions, a save that writes no pickle and loads back to the same
numbers, and the refusals every head shares.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from samples import feature_set

from pipeline.errors import HeadError
from pipeline.heads.features import FeatureSet
from pipeline.heads.kinds.base import DifferentiableHead, FittableHead, Head
from pipeline.heads.record import HeadRecord
from pipeline.heads.registry import HEADS, SAVED_KINDS, make_head

CASES = [(kind, recipe) for kind, entry in HEADS.items() for recipe in (entry.recipes or (None,))]


@pytest.mark.parametrize("kind, recipe", CASES)
def test_head_fits_scores_saves_and_loads(kind, recipe, tmp_path):
    features = feature_set(classes=3, per_class=(20, 6, 6), dims=8)
    head = make_head(kind, recipe)
    assert head.fit(features) is head
    json.dumps(head.params_), json.dumps(head.search_)
    valid = features.splits["valid"]
    assert head.valid_probabilities_.shape == (len(valid), 3)
    test_x = features.splits["test"].x
    probabilities = head.predict_proba(test_x)
    assert probabilities.shape == (len(test_x), 3) and np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    name = head.save(tmp_path / "head")
    saved = tmp_path / name
    assert saved.is_file() and saved.name.startswith("head.") and saved.suffix in (".npz", ".keras")
    if saved.suffix == ".npz":
        with np.load(saved, allow_pickle=False) as arrays:  # raises on any pickled object
            assert all(arrays[key].dtype != object for key in arrays.files)
    record = HeadRecord(kind, features.class_names, "key", model_file=name, hyperparameters=head.params_)
    loaded = type(head).load(tmp_path / "head", record)
    np.testing.assert_allclose(loaded.predict_proba(test_x), probabilities, rtol=1e-3, atol=1e-4)
    assert isinstance(head, FittableHead) and isinstance(loaded, Head) and head.kind == loaded.kind
    assert isinstance(head, DifferentiableHead) == HEADS[kind].differentiable


@pytest.mark.parametrize("kind", list(SAVED_KINDS))
def test_every_saved_kind_states_the_head_interface(kind):
    """The `Head` protocol (`pipeline.heads.kinds.base`) holds for every registry kind with a model; kinds
    without one (fused heads, outside models' results) have no class and say why they cannot be loaded."""
    entry = SAVED_KINDS[kind]
    if not entry.has_model:
        assert entry.module is None and entry.class_name is None and "{path}" in entry.no_model
        return
    cls = entry.head_class()
    for method in ("predict_proba", "save", "load") + (("keras_layers",) if entry.differentiable else ()):
        assert callable(getattr(cls, method, None)), f"{kind} has no {method}"
    assert cls.kind == kind
    if kind in HEADS:
        assert callable(getattr(cls, "fit", None))
    else:  # a fine-tuned model is built by `fine-tune`, not fitted
        instance = cls(None, {})
        assert isinstance(instance, Head) and isinstance(instance, DifferentiableHead)
        assert not isinstance(instance, FittableHead)


@pytest.mark.parametrize("kind, recipe", CASES)
def test_head_refuses_what_it_cannot_fit(kind, recipe):
    with pytest.raises(HeadError, match="only one class"):
        make_head(kind, recipe).fit(feature_set(classes=1))
    features = feature_set(classes=3)
    without_valid = FeatureSet(features.info, {k: v for k, v in features.splits.items() if k != "valid"})
    with pytest.raises(HeadError, match="validation"):
        make_head(kind, recipe).fit(without_valid)


@pytest.mark.parametrize("kind, recipe", CASES)
def test_a_differentiable_head_is_the_same_function_as_a_keras_graph(kind, recipe):
    from pipeline.heads.graph import head_model

    features = feature_set(classes=3, per_class=(20, 6, 6), dims=8)
    head = make_head(kind, recipe).fit(features)
    test_x = features.splits["test"].x
    if not HEADS[kind].differentiable:
        with pytest.raises(HeadError, match="no gradient"):
            head_model(head, (8,))
        return
    maps = np.repeat(np.repeat(test_x[:, None, None, :], 2, axis=1), 2, axis=2)  # 2x2 maps averaging to x
    for inputs, shape in ((test_x, (8,)), (maps, (2, 2, 8))):
        graph = np.asarray(head_model(head, shape)(inputs))
        np.testing.assert_allclose(graph, head.predict_proba(test_x), rtol=1e-4, atol=1e-5)
