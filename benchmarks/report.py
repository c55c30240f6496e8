"""Turn the benchmark's measurements into verdicts per target and a markdown report."""

from __future__ import annotations

TARGETS = {
    "1-input-pipeline": "end-to-end extraction >= 0.90 x bare forward-pass throughput",
    "2a-bf16-speed": "bfloat16 >= 3x float32 throughput (on CPUs with AMX/AVX512-BF16)",
    "2b-bf16-cosine": "bfloat16 features: mean cosine similarity to float32 >= 0.99",
    "2c-bf16-accuracy": "bfloat16 logistic-regression test accuracy within 0.5 points of float32",
    "3a-rerun": "unchanged re-run <= 3% of the first run's wall time",
    "3b-add-10pct": "re-run after adding 10% new images <= 15% of the first run's wall time",
    "4a-gap-dense": "gap-dense --recipe classic <= 10 s",
    "4b-logreg": "logistic regression with its C search <= 20 s",
    "4c-svm": "linear SVM with its C search <= 30 s",
    "5-memory": "peak RSS of extract at 10x the images within 10%",
    "6a-naive-speed": "float32 extract at least as fast as the naive script",
    "6b-naive-memory": "at most half the naive script's peak memory",
    "7a-float16-size": "--store-dtype float16 halves the cache (about 50 KB per 7x7x512 image)",
    "7b-float16-accuracy": "head accuracy with float16 storage within 0.2 points of float32",
}
POINTS = 100.0  # accuracy fractions -> percentage points


def verdicts(results: dict) -> list[dict]:
    """One row per target: what was measured, and whether the target is met."""
    s = results["scenarios"]
    rows = []

    def add(key, measured, met, note=""):
        rows.append({"target": key, "goal": TARGETS[key], "measured": measured, "met": met, "note": note})

    pipe = s.get("input_pipeline", {})
    if "ratio" in pipe:
        add("1-input-pipeline", f"{pipe['ratio']:.3f} ({pipe['pipeline_images_per_second']:.2f} vs "
            f"{pipe['bare_images_per_second']:.2f} img/s, alternated)", pipe["ratio"] >= 0.90)
    variants = s.get("precision_speed", {}).get("variants", {})
    if "bfloat16" in variants:
        speedup = variants["bfloat16"]["images_per_second"] / variants["float32"]["images_per_second"]
        add("2a-bf16-speed", f"{speedup:.2f}x ({variants['bfloat16']['images_per_second']:.2f} vs "
            f"{variants['float32']['images_per_second']:.2f} img/s)", speedup >= 3.0,
            "" if _has_bf16_hardware(results) else "this CPU has no AMX/AVX512-BF16")
    real = s.get("real_photos", {})
    if "bfloat16_vs_float32" in real:
        compared = real["bfloat16_vs_float32"]
        add("2b-bf16-cosine", f"{compared['mean_cosine']:.5f} (min {compared['min_cosine']:.5f}, "
            f"{compared['images']} photos)", compared["mean_cosine"] >= 0.99)
        delta = _accuracy_delta(real["fits"], "float32/logreg", "bfloat16/logreg")
        add("2c-bf16-accuracy", f"{delta:+.2f} points", abs(delta) <= 0.5)
    first = s.get("full_size", {}).get("extract")
    caching = s.get("caching", {})
    if first and "rerun" in caching:
        first_wall = first["process"]["wall_seconds"]
        for key, run, limit in (("3a-rerun", caching["rerun"], 0.03), ("3b-add-10pct", caching["added"], 0.15)):
            share = run["process"]["wall_seconds"] / first_wall
            add(key, f"{share:.1%} ({run['process']['wall_seconds']:.1f} s of {first_wall:.0f} s)", share <= limit)
    head_runs = s.get("heads", {})
    if "fits" in head_runs:
        for key, label, limit in (("4a-gap-dense", "gap-dense-classic", 10), ("4b-logreg", "logreg", 20),
                                  ("4c-svm", "svm", 30)):
            fit = head_runs["fits"][label]
            note = f"median of {fit['repeats']}: {', '.join(f'{t:.1f}' for t in fit['all_head_seconds'])} s"
            if fit["tensorflow_import_seconds"]:
                note += f"; importing TensorFlow first took {fit['tensorflow_import_seconds']:.1f} s more"
            add(key, f"{fit['head_seconds']:.1f} s (fit alone {fit['fit_seconds']:.1f} s)", fit["head_seconds"] <= limit, note)
    mem = s.get("memory", {})
    if "extract_rss_growth" in mem:
        small, large = (mem["runs"][k]["extract"]["process"]["peak_rss_mb"] for k in mem["runs"])
        add("5-memory", f"x{mem['extract_rss_growth']:.3f} ({small:.0f} -> {large:.0f} MB)", mem["extract_rss_growth"] <= 1.10)
    speed = s.get("naive_speed", {})
    if "speedup" in speed:
        add("6a-naive-speed", f"{speed['speedup']:.3f}x as fast ({speed['order']} runs on {speed['images']} photos: "
            f"{speed['wall_seconds']['extract']:.0f} vs {speed['wall_seconds']['naive']:.0f} s in total)",
            speed["speedup"] >= 1.0)
    if "naive" in s.get("full_size", {}):
        memory_rows = [(f"{results['plan']['photos']} photos at {results['plan']['input_size']} px", first["process"]["peak_rss_mb"],
                        s["full_size"]["naive"]["process"]["peak_rss_mb"])]
        for count, run in mem.get("runs", {}).items():
            memory_rows.append((f"{count} images, memory plan", run["extract"]["process"]["peak_rss_mb"],
                                run["naive"]["process"]["peak_rss_mb"]))
        text = "; ".join(f"{label}: {a / b:.2f} ({a:.0f} vs {b:.0f} MB)" for label, a, b in memory_rows)
        add("6b-naive-memory", text, all(a <= 0.5 * b for _, a, b in memory_rows), "met only if met at every size")
    if "feature_bytes" in real or "feature_bytes" in head_runs:
        source = real.get("feature_bytes") or {}
        f32, f16 = source.get("float32"), source.get("float32-store-float16")
        if f32 is None:
            f32, f16 = head_runs["feature_bytes"]["float32"], head_runs["feature_bytes"]["float16"]
        add("7a-float16-size", f"{_size(f16['bytes_per_row'])} vs {_size(f32['bytes_per_row'])} per image "
            f"(whole file per row: {_size(f16['file_bytes_per_row'])} vs {_size(f32['file_bytes_per_row'])})",
            f16["bytes_per_row"] * 2 == f32["bytes_per_row"])
        deltas = []
        if "fits" in real:
            for kind in ("logreg", "svm"):
                deltas.append((f"photos {kind}", _accuracy_delta(real["fits"], f"float32/{kind}", f"float32-store-float16/{kind}")))
        if "float16_fits" in head_runs:
            for kind, fit in head_runs["float16_fits"].items():
                deltas.append((f"synthetic {kind}", (fit["top1"]["test"] - head_runs["fits"][kind]["top1"]["test"]) * POINTS))
        add("7b-float16-accuracy", ", ".join(f"{label} {delta:+.2f}" for label, delta in deltas) + " points",
            all(abs(delta) <= 0.2 for _, delta in deltas))
    return rows


def _accuracy_delta(fits: dict, reference: str, other: str) -> float:
    return (fits[other]["top1"]["test"] - fits[reference]["top1"]["test"]) * POINTS


def _has_bf16_hardware(results: dict) -> bool:
    flags = results["machine"]["cpu_flags"]
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


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
                  "| round | bare img/s | pipeline img/s | backbone busy | idle, waiting for images | idle, waiting for writer |",
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
                     f"{v['images_per_second']:.2f} img/s over {v['images']} images, interleaved; build {v['build_seconds']:.1f} s, "
                     f"first batch {v['first_batch_seconds']:.1f} s"))
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
        runs.append((f"extract, {count} images (memory plan)", run["extract"]["process"], _extract_text(run["extract"])))
        runs.append((f"naive script, {count} images (memory plan)", run["naive"]["process"], ""))
    head_runs = s.get("heads", {})
    if "fits" in head_runs:
        for label, fit in list(head_runs["fits"].items()) + [(f"{k} (float16 cache)", v) for k, v in head_runs["float16_fits"].items()]:
            runs.append((f"fit-head {label}", fit["process"], _fit_text(fit)))
    real = s.get("real_photos", {})
    if "extract" in real:
        for label, run in real["extract"].items():
            runs.append((f"catsdogs extract {label}", run["process"], _extract_text(run)))
        for label, fit in real["fits"].items():
            runs.append((f"catsdogs fit-head {label}", fit["process"], _fit_text(fit)))
    elif "skipped" in real:
        lines += [f"Real-photo scenarios skipped: {real['skipped']}.", ""]
    lines += ["| run | wall s | CPU s | peak RSS MB | details |", "|---|---|---|---|---|"]
    lines += [f"| {label} | {p['wall_seconds']:.1f} | {p['cpu_seconds']:.1f} | {p['peak_rss_mb']:.0f} | {extra} |"
              for label, p, extra in runs]
    if "bfloat16_vs_float32" in real:
        lines += ["", "| features compared with float32 | images | mean cosine | min cosine | mean relative error |",
                  "|---|---|---|---|---|"]
        for label in ("bfloat16_vs_float32", "float16_store_vs_float32"):
            c = real[label]
            lines.append(f"| {label.split('_vs_')[0]} | {c['images']} | {c['mean_cosine']:.6f} | {c['min_cosine']:.6f} | "
                         f"{c['mean_relative_error']:.2e} |")
    return lines


def _extract_text(record: dict) -> str:
    rate = record["pipeline_images_per_second"]
    text = f"{record['extracted']} extracted, {record['reused']} reused"
    if rate:
        text += (f"; {rate:.2f} img/s end to end after {record['startup_seconds']:.1f} s building the backbone; "
                 f"backbone {record['forward_seconds']:.1f} s, idle waiting for images "
                 f"{record['waiting_for_images_seconds']:.1f} s, for the writer {record['waiting_for_writer_seconds']:.1f} s")
    return text + f"; cache {record['cache_megabytes']:.0f} MB"


def _fit_text(fit: dict) -> str:
    top1 = ", ".join(f"{split} {value:.3f}" for split, value in fit["top1"].items())
    imported = f"import TensorFlow {fit['tensorflow_import_seconds']:.1f} s, " if fit["tensorflow_import_seconds"] else ""
    return (f"{imported}read + fit + score + save {fit['head_seconds']:.1f} s (fit {fit['fit_seconds']:.1f} s); "
            f"top-1 {top1}; {fit['params']}")


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1000:.1f} KB" if num_bytes >= 1000 else f"{num_bytes} B"
