"""TensorFlow and Keras, imported quietly.

While TensorFlow's C++ runtime loads, it writes lines such as "All log messages before
absl::InitializeLog() is called are written to STDERR" and "Could not find cuda drivers on your
machine, GPU will not be used" straight to the process's stderr, before `TF_CPP_MIN_LOG_LEVEL`
can take effect. The library imports TensorFlow and Keras only through `import_tensorflow` and
`import_keras`, which point file descriptor 2 at the null device for the duration of the first
import. Import errors still raise as usual; set `BOTTLENECK_TF_LOGS=1` to see those lines.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

#: Set to a non-empty value to let TensorFlow's start-up lines through.
SHOW_LOGS_VARIABLE = "BOTTLENECK_TF_LOGS"


def import_tensorflow():
    """The `tensorflow` module, imported quietly the first time."""
    _load_quietly()
    return importlib.import_module("tensorflow")


def import_keras():
    """The `keras` module (on TensorFlow), imported quietly the first time."""
    _load_quietly()
    return importlib.import_module("keras")


def _load_quietly() -> None:
    if "tensorflow" in sys.modules or os.environ.get(SHOW_LOGS_VARIABLE):
        return
    with _native_stderr_silenced():
        importlib.import_module("tensorflow")


@contextlib.contextmanager
def quiet_native_stderr():
    """Hide what C++ code writes straight to stderr inside the block (e.g. TensorFlow Lite's "INFO: Created
    TensorFlow Lite XNNPACK delegate for CPU." at an interpreter's first run); `BOTTLENECK_TF_LOGS=1` shows it."""
    if os.environ.get(SHOW_LOGS_VARIABLE):
        yield
        return
    with _native_stderr_silenced():
        yield


@contextlib.contextmanager
def _native_stderr_silenced():
    """Redirect file descriptor 2 (where C++ code logs) to the null device, then restore it."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
