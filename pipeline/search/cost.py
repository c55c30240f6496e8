"""Seconds per candidate, from measured throughput.

An extraction costs a start-up (TensorFlow, building the backbone) plus, per row still to compute
(one per image, K + 1 per image with `--views K`, minus the rows already cached), the measured
seconds per row of that backbone at its native size (decoding and forward pass, everything but
the start-up), scaled by the pixel count ((size / native)^2). Before a backbone has been measured
a row costs the decode time plus its published multiply-adds (`GFLOPS_AT_NATIVE`) times this
machine's measured seconds per GFLOP (the last extraction's; `PRIOR_SECONDS_PER_GFLOP` before any).

A head fit costs seconds per training row, per kind, learnt from the fits already made (the
slowest rate seen, so estimates err long), doubled for `avgmax` pooling (twice the features).

Every observation comes from a real run of this search (`observe_*`), and the model is saved in
the search record, so a resumed search starts from the throughput it measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.backbones.registry import BACKBONES
from pipeline.errors import UsageError
from pipeline.search.space import Extraction

#: Published multiply-adds (G) of one forward pass at the native input size, without the classifier.
GFLOPS_AT_NATIVE = {"vgg16": 15.5, "vgg19": 19.6, "resnet50": 4.1, "inception_v3": 5.7, "xception": 8.4,
                    "mobilenet": 0.57, "mobilenet_v2": 0.3, "efficientnet_lite0": 0.41, "efficientnet_b0": 0.39}
#: A backbone missing above is costed like the heaviest one known (estimates err long).
UNKNOWN_GFLOPS = max(GFLOPS_AT_NATIVE.values())
#: Forward seconds per GFLOP on this project's 2-core reference machine (VGG16 at 224: ~0.4 s an image).
PRIOR_SECONDS_PER_GFLOP = 0.026
#: Decoding and resizing one image, on top of the forward pass.
PRIOR_DECODE_SECONDS = 0.01
#: Importing TensorFlow and building a backbone with its weights.
PRIOR_STARTUP_SECONDS = 15.0
#: Head fit seconds per training row before a head of that kind has been timed here.
PRIOR_HEAD_SECONDS_PER_ROW = {"logreg": 0.01, "svm": 0.01, "knn": 0.001, "mlp": 0.05, "gap-dense": 0.05}
UNKNOWN_HEAD_SECONDS_PER_ROW = 0.05
#: Fixed seconds of any head fit (loading the features, scoring, saving).
HEAD_OVERHEAD_SECONDS = 1.0
#: Extractions of fewer rows than this time mostly overheads and do not teach the forward rate.
MIN_ROWS_TO_LEARN = 8
POOLING_WIDTH = {"avg": 1, "max": 1, "avgmax": 2}
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms])")


@dataclass
class CostModel:
    """Estimated seconds of extractions and head fits, refined by `observe_*` (see the module doc)."""

    seconds_per_gflop: float = PRIOR_SECONDS_PER_GFLOP
    decode_seconds: float = PRIOR_DECODE_SECONDS
    startup_seconds: float = PRIOR_STARTUP_SECONDS
    native_seconds_per_image: dict = field(default_factory=dict)  # backbone -> measured seconds per row
    head_seconds_per_row: dict = field(default_factory=dict)  # kind -> slowest measured rate

    def forward_seconds_per_row(self, extraction: Extraction) -> float:
        native = BACKBONES[extraction.backbone].default_input_size
        scale = (extraction.input_size / native) ** 2
        measured = self.native_seconds_per_image.get(extraction.backbone)
        if measured is not None:
            return measured * scale
        gflops = GFLOPS_AT_NATIVE.get(extraction.backbone, UNKNOWN_GFLOPS)
        return self.decode_seconds + gflops * self.seconds_per_gflop * scale

    def extraction_seconds(self, extraction: Extraction, rows_to_compute: int) -> float:
        """Seconds to compute `rows_to_compute` rows of `extraction` (0 when everything is cached)."""
        if rows_to_compute <= 0:
            return 0.0
        return self.startup_seconds + rows_to_compute * self.forward_seconds_per_row(extraction)

    def head_seconds(self, kind: str, pooling: str, train_rows: int) -> float:
        rate = self.head_seconds_per_row.get(kind, PRIOR_HEAD_SECONDS_PER_ROW.get(kind, UNKNOWN_HEAD_SECONDS_PER_ROW))
        return HEAD_OVERHEAD_SECONDS + rate * train_rows * POOLING_WIDTH.get(pooling, 1)

    def observe_extraction(self, extraction: Extraction, rows: int, seconds: float, startup_seconds: float) -> None:
        """Learn from an extraction that computed `rows` rows in `seconds`, `startup_seconds` of them starting up."""
        if startup_seconds > 0:
            self.startup_seconds = startup_seconds
        working = seconds - startup_seconds
        if rows < MIN_ROWS_TO_LEARN or working <= 0:
            return
        native = BACKBONES[extraction.backbone].default_input_size
        per_native = working / rows / (extraction.input_size / native) ** 2
        self.native_seconds_per_image[extraction.backbone] = per_native
        gflops = GFLOPS_AT_NATIVE.get(extraction.backbone)
        if gflops is not None and per_native > self.decode_seconds:
            self.seconds_per_gflop = (per_native - self.decode_seconds) / gflops

    def observe_probe(self, extraction: Extraction, forward_seconds_per_row: float, startup_seconds: float) -> None:
        """Learn a backbone's rate from a timed forward pass (no decoding: the decode time is added)."""
        native = BACKBONES[extraction.backbone].default_input_size
        per_native = forward_seconds_per_row / (extraction.input_size / native) ** 2 + self.decode_seconds
        self.native_seconds_per_image[extraction.backbone] = per_native
        if startup_seconds > 0:
            self.startup_seconds = startup_seconds

    def observe_head(self, kind: str, pooling: str, train_rows: int, seconds: float) -> None:
        if train_rows <= 0:
            return
        rate = max(seconds - HEAD_OVERHEAD_SECONDS, 0.0) / train_rows / POOLING_WIDTH.get(pooling, 1)
        self.head_seconds_per_row[kind] = max(rate, self.head_seconds_per_row.get(kind, 0.0))

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict | None) -> CostModel:
        known = set(cls.__dataclass_fields__)
        return cls(**{name: value for name, value in (data or {}).items() if name in known})


def parse_duration(text: str) -> float:
    """Seconds of a duration such as "30m", "1h30m", "90s" or "90" (seconds); `UsageError` otherwise."""
    text = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    elif text and _DURATION.sub("", text) == "":
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION.findall(text))
    else:
        raise UsageError(f"--budget must be a duration such as 30m, 1h30m, 90s or 90 (seconds), got {text!r}")
    if seconds <= 0:
        raise UsageError(f"--budget must be more than zero, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Whole seconds, rounded up, as --budget writes them (90 -> "1m30s", 12.4 -> "13s", 120 -> "2m")."""
    seconds = int(-(-seconds // 1))
    minutes, rest = divmod(seconds, 60)
    return f"{minutes}m{rest:02d}s" if minutes and rest else f"{minutes}m" if minutes else f"{rest}s"
