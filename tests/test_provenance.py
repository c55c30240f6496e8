from dataclasses import replace

import pytest

from pipeline.cache.key import SCHEMA_VERSION, FeatureSpec

BASE = FeatureSpec(backbone="vgg16", weights_fingerprint="ab" * 32, layer="block5_pool", input_size=224,
                   resize_policy="stretch", resize_filter="bilinear", preprocessing="caffe", precision="float32",
                   pooling="none", store_dtype="float32")

CHANGES = {
    "backbone": "vgg19", "weights_fingerprint": "cd" * 32, "layer": "block4_pool", "input_size": 192,
    "resize_policy": "crop", "resize_filter": "nearest", "preprocessing": "tf", "precision": "bfloat16",
    "pooling": "avg", "store_dtype": "float16", "schema_version": SCHEMA_VERSION + 1,
}


def test_key_is_stable_for_equal_specs():
    assert BASE.key() == replace(BASE).key() == FeatureSpec.from_json(BASE.to_json()).key()
    assert len(BASE.key()) == 64


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_every_field_changes_the_key(field):
    assert replace(BASE, **{field: CHANGES[field]}).key() != BASE.key()


def test_short_name_is_readable_and_keyed():
    assert BASE.short_name() == f"vgg16-block5_pool-{BASE.key()[:10]}"
    assert replace(BASE, pooling="avg").short_name().startswith("vgg16-block5_pool-avg-")


def test_invalid_values_are_refused():
    with pytest.raises(ValueError, match="pooling"):
        replace(BASE, pooling="mean")
    with pytest.raises(ValueError, match="store dtype"):
        replace(BASE, store_dtype="int8")
