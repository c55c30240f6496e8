"""Turn the benchmark's measurements into verdicts per target and a markdown report."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.feature_cache import VGG16_BOTTLENECK
from benchmarks.plan import FULL
from pipeline.backbones.precision import BF16_CPU_FLAGS

#: How the report names the CPUs that have one of `pipeline.backbones.precision.BF16_CPU_FLAGS`.
_BF16_HARDWARE = "AMX/AVX512-BF16"
#: float16 storage against float32: the cache shrinks to this share (2 bytes instead of 4 per value).
_FLOAT16_SHARE = np.dtype(np.float16).itemsize / np.dtype(np.float32).itemsize


@dataclass(frozen=True)
class Target:
    """One performance target: its threshold, the goal text built from it, and which side of it is met."""

    id: str
    threshold: float
    describe: Callable[[float], str]  # the goal text for a threshold
    at_least: bool = False  # met when measured >= threshold; otherwise when measured <= threshold

    @property
    def goal(self) -> str:
        return self.describe(self.threshold)

    def met(self, measured: float) -> bool:
        return measured >= self.threshold if self.at_least else measured <= self.threshold


def _times(factor: float) -> str:
    return "" if factor == 1 else f"{factor:g}x "


def _share(fraction: float) -> str:
    return "half" if fraction == 0.5 else f"{fraction:g}x"


def _float16_row() -> str:
    """About how large one full-size bottleneck row is in float16, e.g. "about 50 KB per 7x7x512 image"."""
    row_bytes = math.prod(VGG16_BOTTLENECK) * np.dtype(np.float16).itemsize
    return f"about {row_bytes / 1000:.0f} KB per {'x'.join(map(str, VGG16_BOTTLENECK))} image"


_MEMORY_GROWTH = FULL.memory_sizes[1] / FULL.memory_sizes[0]

TARGETS = {target.id: target for target in (
    Target("1-input-pipeline", 0.90, lambda t: f"end-to-end extraction >= {t:.2f} x bare forward-pass throughput",
           at_least=True),
    Target("2a-bf16-speed", 3.0, lambda t: f"bfloat16 >= {t:g}x float32 throughput (on CPUs with {_BF16_HARDWARE})",
           at_least=True),
    Target("2b-bf16-cosine", 0.99, lambda t: f"bfloat16 features: mean cosine similarity to float32 >= {t:g}",
           at_least=True),
    Target("2c-bf16-accuracy", 0.5,
           lambda t: f"bfloat16 logistic-regression test accuracy within {t:g} points of float32"),
    Target("3a-rerun", 0.03, lambda t: f"unchanged re-run <= {t:.0%} of the first run's wall time"),
    Target("3b-add-10pct", 0.15, lambda t: f"re-run after adding {FULL.added_fraction:.0%} new images <= {t:.0%} "
           "of the first run's wall time"),
    Target("4a-gap-dense", 10, lambda t: f"gap-dense --recipe classic <= {t:g} s"),
    Target("4b-logreg", 20, lambda t: f"logistic regression with its C search <= {t:g} s"),
    Target("4c-svm", 30, lambda t: f"linear SVM with its C search <= {t:g} s"),
    Target("5-memory", 1.10, lambda t: f"peak RSS of extract at {_MEMORY_GROWTH:g}x the images within {t - 1:.0%}"),
    Target("6a-naive-speed", 1.0, lambda t: f"float32 extract at least {_times(t)}as fast as the naive script",
           at_least=True),
    Target("6b-naive-memory", 0.5, lambda t: f"at most {_share(t)} the naive script's peak memory"),
    Target("7a-float16-size", _FLOAT16_SHARE,
           lambda t: f"--store-dtype float16 {'halves' if t == 0.5 else f'shrinks to {t:g}x'} the cache "
                     f"({_float16_row()})"),
    Target("7b-float16-accuracy", 0.2, lambda t: f"head accuracy with float16 storage within {t:g} points of float32"),
    Target("8-fine-tune-epoch", 5.0, lambda t: f"an epoch of block5 fine-tuning from the boundary cache >= {t:g}x "
           "as fast as the same epoch from the images through the frozen layers", at_least=True),
)}
#: The fit-head runs that targets 4a-4c time, by their label in the "heads" scenario.
HEAD_TARGETS = {"gap-dense-classic": "4a-gap-dense", "logreg": "4b-logreg", "svm": "4c-svm"}
POINTS = 100.0  # accuracy fractions -> percentage points


def verdicts(results: dict) -> list[dict]:
    """One row per target: what was measured, and whether the target is met."""
    s = results["scenarios"]
    rows = []

    def add(key, measured, met, note=""):
        rows.append({"target": key, "goal": TARGETS[key].goal, "measured": measured, "met": met, "note": note})

    pipe = s.get("input_pipeline", {})
    if "ratio" in pipe:
        add("1-input-pipeline", f"{pipe['ratio']:.3f} ({pipe['pipeline_images_per_second']:.2f} vs "
            f"{pipe['bare_images_per_second']:.2f} img/s, alternated)", TARGETS["1-input-pipeline"].met(pipe["ratio"]))
    variants = s.get("precision_speed", {}).get("variants", {})
    if "bfloat16" in variants:
        speedup = variants["bfloat16"]["images_per_second"] / variants["float32"]["images_per_second"]
        add("2a-bf16-speed", f"{speedup:.2f}x ({variants['bfloat16']['images_per_second']:.2f} vs "
            f"{variants['float32']['images_per_second']:.2f} img/s)", TARGETS["2a-bf16-speed"].met(speedup),
            "" if _has_bf16_hardware(results) else f"this CPU has no {_BF16_HARDWARE}")
    real = s.get("real_photos", {})
    if "bfloat16_vs_float32" in real:
        compared = real["bfloat16_vs_float32"]
        add("2b-bf16-cosine", f"{compared['mean_cosine']:.5f} (min {compared['min_cosine']:.5f}, "
            f"{compared['images']} photos)", TARGETS["2b-bf16-cosine"].met(compared["mean_cosine"]))
        delta = _accuracy_delta(real["fits"], "float32/logreg", "bfloat16/logreg")
        add("2c-bf16-accuracy", f"{delta:+.2f} points", TARGETS["2c-bf16-accuracy"].met(abs(delta)))
    first = s.get("full_size", {}).get("extract")
    caching = s.get("caching", {})
    if first and "rerun" in caching:
        first_wall = first["process"]["wall_seconds"]
        for key, run in (("3a-rerun", caching["rerun"]), ("3b-add-10pct", caching["added"])):
            share = run["process"]["wall_seconds"] / first_wall
            add(key, f"{share:.1%} ({run['process']['wall_seconds']:.1f} s of {first_wall:.0f} s)",
                TARGETS[key].met(share))
    head_runs = s.get("heads", {})
    if "fits" in head_runs:
        for label, key in HEAD_TARGETS.items():
            fit = head_runs["fits"][label]
            note = f"median of {fit['repeats']}: {', '.join(f'{t:.1f}' for t in fit['all_head_seconds'])} s"
            if fit["tensorflow_import_seconds"]:
                note += f"; importing TensorFlow first took {fit['tensorflow_import_seconds']:.1f} s more"
            add(key, f"{fit['head_seconds']:.1f} s (fit alone {fit['fit_seconds']:.1f} s)",
                TARGETS[key].met(fit["head_seconds"]), note)
    mem = s.get("memory", {})
    if "extract_rss_growth" in mem:
        small, large = (mem["runs"][k]["extract"]["process"]["peak_rss_mb"] for k in mem["runs"])
        add("5-memory", f"x{mem['extract_rss_growth']:.3f} ({small:.0f} -> {large:.0f} MB)",
            TARGETS["5-memory"].met(mem["extract_rss_growth"]))
    speed = s.get("naive_speed", {})
    if "speedup" in speed:
        add("6a-naive-speed", f"{speed['speedup']:.3f}x as fast ({speed['order']} runs on {speed['images']} photos: "
            f"{speed['wall_seconds']['extract']:.0f} vs {speed['wall_seconds']['naive']:.0f} s in total)",
            TARGETS["6a-naive-speed"].met(speed["speedup"]))
    if "naive" in s.get("full_size", {}):
        memory_rows = [(f"{results['plan']['photos']} photos at {results['plan']['input_size']} px",
                        first["process"]["peak_rss_mb"], s["full_size"]["naive"]["process"]["peak_rss_mb"])]
        for count, run in mem.get("runs", {}).items():
            memory_rows.append((f"{count} images, memory plan", run["extract"]["process"]["peak_rss_mb"],
                                run["naive"]["process"]["peak_rss_mb"]))
        text = "; ".join(f"{label}: {a / b:.2f} ({a:.0f} vs {b:.0f} MB)" for label, a, b in memory_rows)
        limit = TARGETS["6b-naive-memory"].threshold
        add("6b-naive-memory", text, all(a <= limit * b for _, a, b in memory_rows), "met only if met at every size")
    if "feature_bytes" in real or "feature_bytes" in head_runs:
        source = real.get("feature_bytes") or {}
        f32, f16 = source.get("float32"), source.get("float32-store-float16")
        if f32 is None:
            f32, f16 = head_runs["feature_bytes"]["float32"], head_runs["feature_bytes"]["float16"]
        add("7a-float16-size", f"{_size(f16['bytes_per_row'])} vs {_size(f32['bytes_per_row'])} per image "
            f"(whole file per row: {_size(f16['file_bytes_per_row'])} vs {_size(f32['file_bytes_per_row'])})",
            f16["bytes_per_row"] == TARGETS["7a-float16-size"].threshold * f32["bytes_per_row"])
        deltas = []
        if "fits" in real:
            for kind in ("logreg", "svm"):
                deltas.append((f"photos {kind}",
                               _accuracy_delta(real["fits"], f"float32/{kind}", f"float32-store-float16/{kind}")))
        if "float16_fits" in head_runs:
            for kind, fit in head_runs["float16_fits"].items():
                deltas.append((f"synthetic {kind}",
                               (fit["top1"]["test"] - head_runs["fits"][kind]["top1"]["test"]) * POINTS))
        add("7b-float16-accuracy", ", ".join(f"{label} {delta:+.2f}" for label, delta in deltas) + " points",
            all(TARGETS["7b-float16-accuracy"].met(abs(delta)) for _, delta in deltas))
    tune = s.get("fine_tune_epoch", {})
    if tune.get("ratio"):
        add("8-fine-tune-epoch", f"{tune['ratio']:.2f}x ({tune['seconds']['images']:.1f} vs "
            f"{tune['seconds']['cache']:.1f} s over {tune['order']} epochs of {tune['images']} images)",
            TARGETS["8-fine-tune-epoch"].met(tune["ratio"]))
    return rows


def _accuracy_delta(fits: dict, reference: str, other: str) -> float:
    return (fits[other]["top1"]["test"] - fits[reference]["top1"]["test"]) * POINTS


def _has_bf16_hardware(results: dict) -> bool:
    flags = results["machine"]["cpu_flags"]
    return any(flags.get(flag) for flag in BF16_CPU_FLAGS)


def markdown(results: dict) -> str:
    """The report: machine, verdicts, then every scenario's numbers and how they were measured."""
    machine, plan = results["machine"], results["plan"]
    flags = ", ".join(f"{flag}: {'yes' if present else 'no'}" for flag, present in machine["cpu_flags"].items())
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items() if name != "python")
    lines = [f"# Benchmark results ({results['mode']} mode)", "",
             f"Run {results['started']} - {results['finished']} ({results['seconds'] / 60:.1f} min), "
             f"`python benchmarks/bench.py{' --smoke' if results['mode'] == 'smoke' else ''}`.", "",
             "## Machine", "",
             "| | |", "|---|---|",
             f"| CPU | {machine['cpu_model']}, {machine['cores_visible']} cores visible |",
             f"| CPU flags | {flags} |",
             f"| memory | {machine['memory_gib']} GiB |",
             f"| GPUs | {machine['gpus']} |",
             f"| OS | {machine['os']}, Python {machine['python']} |",
             f"| libraries | {versions} |",
             f"| load average | {machine['load_average_at_start']} at start, {results['load_average_at_end']} at end "
             "(other jobs shared these cores; compare ratios measured within the run) |",
             f"| `--precision auto` | {results['auto_precision']} |", "",
             "## Targets", "",
             "| target | goal | measured | verdict | note |", "|---|---|---|---|---|"]
    for row in results["verdicts"]:
        verdict = {True: "met", False: "**not met**", None: "n/a"}[row["met"]]
        lines.append(f"| {row['target']} | {row['goal']} | {row['measured']} | {verdict} | {row['note']} |")
    lines += ["", "## Scenarios", ""]
    lines += _scenario_tables(results)
    lines += ["", "## Plan", "", "```", *(f"{key}: {value}" for key, value in plan.items()), "```"]
    if results.get("errors"):
        lines += ["", "## Errors", ""] + [f"- {name}: {error}" for name, error in results["errors"].items()]
    return "\n".join(lines) + "\n"


def _scenario_tables(results: dict) -> list[str]:
    s, lines = results["scenarios"], []
    pipe = s.get("input_pipeline", {})
    if "rounds" in pipe:
        lines += ["Target 1, alternated in one process (bare: in-memory tensors; pipeline: `run_extract` on a "
                  "new chunk of JPEGs, backbone build excluded):", "",
                  "| round | bare img/s | pipeline img/s | backbone busy | idle, waiting for images "
                  "| idle, waiting for writer |",
                  "|---|---|---|---|---|---|"]
        for number, round_ in enumerate(pipe["rounds"]):
            bare = round_["bare"]
            cells = [str(number + 1), f"{bare['images'] / bare['seconds']:.2f}"]
            run = round_.get("pipeline")
            if run:
                cells += [f"{run['images'] / run['seconds']:.2f}", f"{run['forward_seconds'] / run['seconds']:.1%}",
                          f"{run['waiting_for_images_seconds']:.2f} s", f"{run['waiting_for_writer_seconds']:.2f} s"]
            else:
                cells += ["", "", "", ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    runs = []  # (label, process, details)
    variants = s.get("precision_speed", {}).get("variants", {})
    for variant, v in variants.items():
        runs.append((f"forward pass {variant}", s["precision_speed"]["process"],
                     f"{v['images_per_second']:.2f} img/s over {v['images']} images, interleaved; "
                     f"build {v['build_seconds']:.1f} s, first batch {v['first_batch_seconds']:.1f} s"))
    full = s.get("full_size", {})
    if "extract" in full:
        runs.append(("extract, first run", full["extract"]["process"], _extract_text(full["extract"])))
        runs.append(("naive script, same photos", full["naive"]["process"], ""))
    for key in ("rerun", "added"):
        if key in s.get("caching", {}):
            runs.append((f"extract, {key}", s["caching"][key]["process"], _extract_text(s["caching"][key])))
    for number, run in enumerate(s.get("naive_speed", {}).get("runs", [])):
        runs.append((f"speed run {number + 1}: {run['kind']}", run["process"], f"{s['naive_speed']['images']} photos"))
    for count, run in s.get("memory", {}).get("runs", {}).items():
        runs.append((f"extract, {count} images (memory plan)", run["extract"]["process"],
                     _extract_text(run["extract"])))
        runs.append((f"naive script, {count} images (memory plan)", run["naive"]["process"], ""))
    head_runs = s.get("heads", {})
    if "fits" in head_runs:
        for label, fit in (list(head_runs["fits"].items())
                           + [(f"{k} (float16 cache)", v) for k, v in head_runs["float16_fits"].items()]):
            runs.append((f"fit-head {label}", fit["process"], _fit_text(fit)))
    real = s.get("real_photos", {})
    if "extract" in real:
        for label, run in real["extract"].items():
            runs.append((f"catsdogs extract {label}", run["process"], _extract_text(run)))
        for label, fit in real["fits"].items():
            runs.append((f"catsdogs fit-head {label}", fit["process"], _fit_text(fit)))
    elif "skipped" in real:
        lines += [f"Real-photo scenarios skipped: {real['skipped']}.", ""]
    tune = s.get("fine_tune_epoch", {})
    if "epochs" in tune:
        lines += [f"Target 8, block5 fine-tuning epochs alternated in one process ({tune['images']} images, batch "
                  f"{tune['batch_size']}, {tune['precision']}; boundary {tune['boundary_shape']} cached once in "
                  f"{tune['boundary_cache_seconds']:.1f} s, {tune['boundary_cache_megabytes']:.0f} MB):", "",
                  "| epoch | from | seconds | img/s | where the time went |", "|---|---|---|---|---|"]
        for number, epoch in enumerate(tune["epochs"]):
            if epoch["path"] == "cache":
                where = (f"waiting for rows {epoch['waiting_for_rows']:.2f} s (read in the background "
                         f"{epoch['reading_in_background']:.2f} s), the rest training block5 + head")
            else:
                where = (f"waiting for decoded images {epoch['waiting_for_images']:.2f} s, frozen block1-4 "
                         f"{epoch['frozen_forward']:.2f} s, training block5 + head {epoch['tuned_step']:.2f} s")
            lines.append(f"| {number + 1} | {epoch['path']} | {epoch['seconds']:.2f} | "
                         f"{epoch['images'] / epoch['seconds']:.1f} | {where} |")
        lines.append("")
    lines += ["| run | wall s | CPU s | peak RSS MB | details |", "|---|---|---|---|---|"]
    lines += [f"| {label} | {p['wall_seconds']:.1f} | {p['cpu_seconds']:.1f} | {p['peak_rss_mb']:.0f} | {extra} |"
              for label, p, extra in runs]
    if "bfloat16_vs_float32" in real:
        lines += ["", "| features compared with float32 | images | mean cosine | min cosine | mean relative error |",
                  "|---|---|---|---|---|"]
        for label in ("bfloat16_vs_float32", "float16_store_vs_float32"):
            c = real[label]
            lines.append(f"| {label.split('_vs_')[0]} | {c['images']} | {c['mean_cosine']:.6f} | "
                         f"{c['min_cosine']:.6f} | {c['mean_relative_error']:.2e} |")
    return lines


def _extract_text(record: dict) -> str:
    rate = record["pipeline_images_per_second"]
    text = f"{record['extracted']} extracted, {record['reused']} reused"
    if rate:
        text += (f"; {rate:.2f} img/s end to end after {record['startup_seconds']:.1f} s building the backbone; "
                 f"backbone {record['forward_seconds']:.1f} s, idle waiting for images "
                 f"{record['waiting_for_images_seconds']:.1f} s, "
                 f"for the writer {record['waiting_for_writer_seconds']:.1f} s")
    return text + f"; cache {record['cache_megabytes']:.0f} MB"


def _fit_text(fit: dict) -> str:
    top1 = ", ".join(f"{split} {value:.3f}" for split, value in fit["top1"].items())
    imported = (f"import TensorFlow {fit['tensorflow_import_seconds']:.1f} s, " if fit["tensorflow_import_seconds"]
                else "")
    return (f"{imported}read + fit + score + save {fit['head_seconds']:.1f} s (fit {fit['fit_seconds']:.1f} s); "
            f"top-1 {top1}; {fit['params']}")


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1000:.1f} KB" if num_bytes >= 1000 else f"{num_bytes} B"
