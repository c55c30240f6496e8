"""`export --format tflite`: TensorFlow Lite's "Created TensorFlow Lite XNNPACK delegate" stays out of the output.

TensorFlow Lite writes that line from C++ once per process, at an interpreter's first run, so each
case runs in a fresh process and reads its real stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from pipeline.backbones.tf_runtime import SHOW_LOGS_VARIABLE

DELEGATE_LINE = "XNNPACK delegate"
VERIFY_A_TINY_TFLITE = """
import sys
import numpy as np
from pipeline.backbones.tf_runtime import import_tensorflow
from pipeline.export.verify import RUNNERS

tf = import_tensorflow()
model = tf.keras.Sequential([tf.keras.Input((2, 2, 3)), tf.keras.layers.Flatten(),
                             tf.keras.layers.Dense(2, activation="softmax")])

@tf.function(input_signature=[tf.TensorSpec((None, 2, 2, 3), tf.float32, name="pixels")])
def serve(pixels):
    return {"probabilities": model(pixels)}

converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
open(sys.argv[1], "wb").write(converter.convert())
probabilities = RUNNERS["tflite"](sys.argv[1])(np.zeros((1, 2, 2, 3), np.float32))
print("ran", probabilities.shape, flush=True)
"""


@pytest.mark.parametrize("show_logs", [False, True])
def test_the_verifying_tflite_run_keeps_the_delegate_line_off_stderr(tmp_path, show_logs):
    env = {key: value for key, value in os.environ.items() if key != SHOW_LOGS_VARIABLE}
    if show_logs:
        env[SHOW_LOGS_VARIABLE] = "1"  # the line is real: it shows when asked for
    done = subprocess.run([sys.executable, "-c", VERIFY_A_TINY_TFLITE, str(tmp_path / "tiny.tflite")], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ran (1, 2)" in done.stdout, done.stderr[-2000:]
    assert (DELEGATE_LINE in done.stderr) is show_logs, done.stderr[-2000:]
