"""TensorFlow's native start-up lines are kept off stderr, and stderr works again afterwards."""

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PROBE = (
    "import os, sys\n"
    "from pipeline.backbones.tf_runtime import import_keras\n"
    "keras = import_keras()\n"
    "print(keras.__name__)\n"
    "os.write(2, b'native stderr still works')\n"
    "print('python stderr still works', file=sys.stderr)\n"
)


def _run_probe(**env):
    return subprocess.run([sys.executable, "-c", PROBE], cwd=PROJECT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})


def test_first_import_is_quiet_and_stderr_is_restored():
    result = _run_probe()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "keras"
    assert result.stderr == "native stderr still workspython stderr still works\n"
