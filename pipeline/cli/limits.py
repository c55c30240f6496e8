"""The range of every numeric option, in one place: a value outside is exit 2 naming the range.

Without upper bounds a typo is a memory bomb or a hang (`--views 100000000` hung while its
memory grew, `--input-size 200000` asked for 112 GiB and ended in MemoryError). Each bound is
far above any sensible use and below what a workstation survives; `--help` shows the ranges.
"""

from __future__ import annotations

import click

#: Backbone input side in pixels: 4.5x ImageNet's 224 (EfficientNet-B7 uses 600). VGG16's first
#: block alone then needs 1024^2 x 64 x 4 bytes = 268 MB per image.
MAX_INPUT_SIZE = 1024
#: Images per forward pass or training step (memory grows linearly with it).
MAX_BATCH_SIZE = 1024
#: Augmented views per image: each is a full forward pass and a cached row.
MAX_VIEWS = 100
#: Decoding threads or Ray actors.
MAX_WORKERS = 256
#: Images between commits of finished rows.
MAX_COMMIT_ROWS = 10_000_000
#: Optimisation steps (visualize, attack) and training epochs (fine-tune).
MAX_STEPS = 100_000
MAX_EPOCHS = 10_000
#: Side of a visualize image, jitter in pixels, and its multi-scale octaves (x1.5 each).
MAX_IMAGE_SIZE = 1024
MAX_JITTER = 512
MAX_SCALES = 8
#: Feature-map panels drawn by `features`, predictions listed by `predict`, export check images.
MAX_CHANNELS = 256
MAX_TOP_K = 1000
MAX_SAMPLES = 10_000
#: Width of a multitask head's hidden layer (a `.keras` head with larger sizes is refused on load).
MAX_HIDDEN_UNITS = 16_384
#: Seeds are 32-bit, as numpy's generators take them.
MAX_SEED = 2**32 - 1
#: Learning rates, regularisation weights, tolerances, GPUs per Ray actor.
MAX_LEARNING_RATE = 10.0
MAX_PENALTY = 1_000.0
MAX_TOLERANCE = 1.0
MAX_GPUS_PER_WORKER = 64.0
#: A validation-loss improvement that fine-tuning must beat (a loss this large has diverged).
MAX_MIN_DELTA = 1_000.0
#: Robust deviations below typical that make an audit outlier (beyond this nothing is one).
MAX_OUTLIER_MADS = 1_000.0

#: The type of every seed option.
SEED = click.IntRange(0, MAX_SEED)
#: Types shared by several commands.
INPUT_SIZE = click.IntRange(1, MAX_INPUT_SIZE)
BATCH_SIZE = click.IntRange(1, MAX_BATCH_SIZE)
WORKERS = click.IntRange(1, MAX_WORKERS)
LEARNING_RATE = click.FloatRange(0, MAX_LEARNING_RATE, min_open=True)
