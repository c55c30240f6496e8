"""Whole models as Keras graphs: preprocessing layers, heads, and pixels -> probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_BACKBONE

from pipeline.backbones.preprocessing import PREPROCESSING_MODES, apply_layers, preprocessing_layers
from pipeline.backbones.registry import BACKBONES


@pytest.mark.parametrize("mode", PREPROCESSING_MODES)
def test_preprocessing_layers_equal_each_familys_preprocess_input_bit_for_bit(mode):
    import keras

    from pipeline.backbones.models import preprocess_function

    spec = next(spec for spec in BACKBONES.values() if spec.preprocessing == mode)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    expected = np.asarray(preprocess_function(spec)(pixels.copy()))
    inputs = keras.Input((8, 8, 3))
    got = np.asarray(keras.Model(inputs, apply_layers(preprocessing_layers(mode), inputs))(pixels))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("kind, store_dtype, pooling", [("logreg", "float32", "avg"), ("gap-dense", "float16", "avg"),
                                                         ("svm", "float32", "avgmax"), ("mlp", "float32", "max")])
def test_the_image_model_predicts_what_predict_predicts(kind, store_dtype, pooling, tiny_dataset, tmp_path):
    from dataclasses import replace

    from pipeline.data.images import decode_image
    from pipeline.extract.options import ExtractOptions
    from pipeline.extract.run import run_extract
    from pipeline.heads.fitting import fit_head
    from pipeline.predict.extraction import load_head_extraction
    from pipeline.predict.image_model import head_image_model
    from pipeline.predict.with_head import predict_images

    options = replace(ExtractOptions(**TINY_BACKBONE, batch_size=8, valid_fraction=0.3), store_dtype=store_dtype)
    cache = Path(run_extract(tiny_dataset, tmp_path / "cache", options).cache_path)
    head = Path(fit_head(cache, kind, pooling=pooling).sidecar_path)
    photos = sorted((tiny_dataset / "test").rglob("*.jpg"))[:4]
    expected = predict_images(photos, head, tmp_path / "cache", top_k=2)
    extraction = load_head_extraction(head, tmp_path / "cache")
    model = head_image_model(extraction)
    pixels = np.stack([decode_image(p, extraction.resize) for p in photos]).astype(np.float32)
    probabilities = np.asarray(model(pixels))
    names = extraction.record.class_names
    for row, result in zip(probabilities, expected):
        for prediction in result["predictions"]:
            assert row[names.index(prediction["label"])] == pytest.approx(prediction["probability"], abs=1e-4)
