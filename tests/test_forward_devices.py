"""The multi-device forward path, exercised on two logical CPU devices (no GPU needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO_ROOT

# Runs in a fresh interpreter: logical devices must be configured before TensorFlow initialises them.
_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from pipeline.backbones import forward
    from pipeline.backbones.registry import get_backbone
    from pipeline.backbones.weights import resolve_weights

    spec = get_backbone("vgg16")
    weights = resolve_weights(spec, "none", ".", 32)
    pixels = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    single = forward.FeatureExtractor(spec, "block5_pool", 32, weights, "float32", "avg")
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    forward.multi_gpu_strategy = lambda: tf.distribute.MirroredStrategy(devices)
    mirrored = forward.FeatureExtractor(spec, "block5_pool", 32, weights, "float32", "avg")
    expected, got = single(pixels), mirrored(pixels)
    print(json.dumps({"replicas": mirrored.strategy.num_replicas_in_sync, "shape": list(got.shape),
                      "max_difference": float(np.abs(got - expected).max()),
                      "scale": float(np.abs(expected).max()),
                      "same_fingerprint": single.fingerprint == mirrored.fingerprint}))
""")


def test_mirrored_forward_splits_batches_across_replicas_and_keeps_order():
    # oneDNN's graph rewrite breaks replicated convolutions on two *logical CPU* devices on AVX-512
    # CPUs ("input depth must be evenly divisible by filter depth"); real replicas are GPUs, whose
    # convolutions never go through oneDNN, so the stand-in devices run without it.
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    done = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["shape"] == [5, 512]
    assert result["same_fingerprint"]
    assert result["max_difference"] <= 1e-5 * max(1.0, result["scale"])
