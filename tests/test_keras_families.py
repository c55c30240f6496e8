"""The added keras.applications families, built with random weights at a small size: layers, preprocessing, cuts."""

import numpy as np
import pytest

from pipeline.backbones.registry import get_backbone

#: The families this module covers, with whether building them is slow (tens of seconds on a busy 2-core machine).
FAMILIES = {
    "resnet50": False, "resnet50_v2": False, "densenet121": False, "efficientnet_v2_b0": False, "convnext_tiny": False,
    "resnet101": True, "resnet152": True, "resnet101_v2": True, "resnet152_v2": True, "efficientnet_v2_b1": True,
    "efficientnet_v2_b2": True, "efficientnet_v2_b3": True, "efficientnet_v2_s": True, "convnext_small": True,
    "convnext_base": True, "inception_resnet_v2": True,
}
NATIVE_SIZES = {"efficientnet_v2_b1": 240, "efficientnet_v2_b2": 260, "efficientnet_v2_b3": 300,
                "efficientnet_v2_s": 384, "inception_resnet_v2": 299}
#: Families without block names, and why (see pipeline/backbones/keras_families.py).
NO_BLOCKS = ("convnext", "inception_resnet_v2")


def _params():
    return [pytest.param(name, marks=[pytest.mark.slow] if slow else [], id=name) for name, slow in FAMILIES.items()]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_preprocessing_layers_equal_the_familys_own_preprocess_input_bit_for_bit(name):
    import keras

    from pipeline.backbones.models import preprocess_function
    from pipeline.backbones.preprocessing import apply_layers, preprocessing_layers

    spec = get_backbone(name)
    pixels = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3)).astype(np.float32)
    expected = np.asarray(preprocess_function(spec)(pixels.copy()))
    inputs = keras.Input((16, 16, 3))
    got = np.asarray(keras.Model(inputs, apply_layers(preprocessing_layers(spec.preprocessing), inputs))(pixels))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_native_sizes_are_keras_defaults(name):
    assert get_backbone(name).default_input_size == NATIVE_SIZES.get(name, 224)


@pytest.mark.parametrize("name", _params())
def test_built_with_random_weights_the_feature_layer_exists_and_every_block_cut_is_one_tensor_wide(name):
    from pipeline.backbones.models import build_feature_model
    from pipeline.finetune.cut import blocks_of, resolve_cut

    spec = get_backbone(name)
    model = build_feature_model(spec, spec.default_layer, spec.min_input_size, None, "float32")
    assert len(model.output.shape) == 4 and model.output.shape[-1] > 0  # a spatial map, as heads expect
    base = spec.build(include_top=False, weights=None, input_size=spec.min_input_size)
    names = [layer.name for layer in base.layers]
    blocks = blocks_of(spec, names)
    if name.startswith(NO_BLOCKS):
        assert spec.block_of is None
        return
    assert len(blocks) > 3 and spec.block_of(spec.default_layer) == blocks[-1]
    for block in blocks[1:]:  # the stem has nothing before it to cache
        cut = resolve_cut(spec, base, spec.default_layer, block, None)
        assert spec.block_of(cut.tuned[0]) == block and cut.tuned[-1] == spec.default_layer


@pytest.mark.parametrize("name", list(FAMILIES))
def test_genuine_weights_resolve_and_verify_where_present(name, tmp_path):
    from pipeline.backbones.models import build_feature_model
    from pipeline.backbones.weights import genuine_weights_status

    spec = get_backbone(name)
    status = genuine_weights_status(spec, tmp_path / "cache")
    if not status.resolves:
        pytest.skip(f"genuine {name} weights are not on this machine: {status.reason}")
    model = build_feature_model(spec, spec.default_layer, spec.min_input_size, status.path, "float32")
    assert model.output.shape[-1] > 0  # the verified file loads into the architecture
