"""The benchmark's scenarios. Each returns a JSON-able dict of measurements (see `bench.py`).

Every measured command runs in its own process (`measure.run_measured`): wall time and peak RSS
are that process's alone. Extraction is measured through the real CLI (`cli.py extract --json`),
so its JSON summary also gives the time spent building the backbone and the time the backbone
sat idle waiting for images or for the disk writer.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.measure import REPO_ROOT, Measured, python_command, run_measured
from benchmarks.plan import BACKBONE, Plan

BENCH_DIR = Path(__file__).resolve().parent
NAIVE_SCRIPT = BENCH_DIR / "naive_extract.py"
FORWARD_WORKER = BENCH_DIR / "forward_worker.py"
HEAD_WORKER = BENCH_DIR / "head_worker.py"
PIPELINE_WORKER = BENCH_DIR / "pipeline_worker.py"
FINETUNE_WORKER = BENCH_DIR / "finetune_worker.py"
CATSDOGS = REPO_ROOT.parent / "shared" / "data" / "catsdogs"
HEAD_KINDS = (("logreg", None), ("svm", None), ("gap-dense", "classic"))
#: Floor for the norms that cosine similarity and relative error divide by (all-zero feature rows).
_NORM_FLOOR = 1e-30


@dataclass(frozen=True)
class Context:
    """Where a benchmark run works and what it feeds the backbone."""

    plan: Plan
    work: Path  # scratch folder: datasets, caches
    weights: str  # --weights value for every run (a verified file, or "none")
    log: object  # callable(str)

    def data(self, name: str) -> Path:
        return self.work / "data" / name

    def caches(self, name: str) -> Path:
        return self.work / "caches" / name


def cli_extract(ctx: Context, data_dir: Path, cache_dir: Path, input_size: int, precision: str = "float32",
                store_dtype: str = "float32", layer: str | None = None) -> Measured:
    command = python_command("cli.py", "extract", data_dir, "--cache-dir", cache_dir, "--weights", ctx.weights,
                             "--input-size", input_size, "--batch-size", ctx.plan.batch_size, "--precision", precision,
                             "--store-dtype", store_dtype, "--json")
    if layer:
        command += ["--layer", layer]
    return run_measured(command)


def naive_extract(ctx: Context, data_dir: Path, input_size: int, layer: str) -> Measured:
    out = ctx.work / "naive" / f"{data_dir.name}-{input_size}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = run_measured(python_command(NAIVE_SCRIPT, data_dir, out, "--weights", ctx.weights, "--input-size",
                                         input_size, "--layer", layer, "--batch-size", ctx.plan.batch_size))
    out.unlink(missing_ok=True)
    return result


def forward_worker(ctx: Context, variants, images: int) -> dict:
    result = run_measured(python_command(FORWARD_WORKER, "--weights", ctx.weights, "--input-size", ctx.plan.input_size,
                                         "--batch-size", ctx.plan.batch_size, "--images", images,
                                         "--variants", ",".join(variants), "--cache-dir", ctx.work / "weights-cache"))
    return {**result.json(), "process": result.summary()}


def extract_record(run: Measured) -> dict:
    """What the benchmark keeps of one `extract --json` run."""
    summary = run.json()
    pipeline_seconds = summary["seconds"] - summary["startup_seconds"]
    return {
        "process": run.summary(),
        "extracted": summary["extracted"],
        "reused": summary["reused"],
        "images": summary["images"],
        "seconds_in_extract": summary["seconds"],
        "startup_seconds": summary["startup_seconds"],
        "forward_seconds": summary["forward_seconds"],
        "waiting_for_images_seconds": summary["waiting_for_images_seconds"],
        "waiting_for_writer_seconds": summary["waiting_for_writer_seconds"],
        "pipeline_seconds": round(pipeline_seconds, 3),
        "pipeline_images_per_second": (round(summary["extracted"] / pipeline_seconds, 3) if summary["extracted"]
                                       else None),
        "cache_path": summary["cache_path"],
        "cache_megabytes": round(Path(summary["cache_path"]).stat().st_size / 2 ** 20, 1),
        "precision": summary["precision"],
        "feature_shape": summary["feature_shape"],
    }


# ------------------------------------------------------------------------------------------
# Target 1: the input pipeline against the bare forward pass


def input_pipeline(ctx: Context) -> dict:
    """Bare forward rounds alternated with end-to-end extraction of JPEG chunks, in one process."""
    plan = ctx.plan
    chunks = [ctx.data(f"chunk-{k}") for k in range(plan.pipeline_chunks)]
    ctx.log(f"alternate bare forward ({plan.pipeline_bare_images} images) with extraction of "
            f"{plan.pipeline_chunks} chunks of {plan.pipeline_chunk_images} JPEGs")
    run = run_measured(python_command(PIPELINE_WORKER, *chunks, "--cache-root", ctx.caches("pipeline"),
                                      "--weights", ctx.weights, "--input-size", plan.input_size,
                                      "--batch-size", plan.batch_size, "--bare-images", plan.pipeline_bare_images))
    return {**run.json(), "process": run.summary()}


# ------------------------------------------------------------------------------------------
# Target 2 (speed): precisions and XLA on in-memory tensors


def precision_speed(ctx: Context) -> dict:
    plan = ctx.plan
    ctx.log(f"forward pass on in-memory tensors, interleaved: {', '.join(plan.forward_variants)}")
    return forward_worker(ctx, plan.forward_variants, plan.forward_images)


# ------------------------------------------------------------------------------------------
# Targets 3 and 6 at full size: first run, the naive script, re-runs


def full_size(ctx: Context) -> dict:
    """The first `extract` of the photos (the reference for target 3) and the naive script on them."""
    plan = ctx.plan
    ctx.log(f"extract {plan.photos} JPEGs (first run)")
    first = extract_record(cli_extract(ctx, ctx.data("photos"), ctx.caches("photos"), plan.input_size))
    ctx.log(f"naive script on the same {plan.photos} JPEGs")
    naive = naive_extract(ctx, ctx.data("photos"), plan.input_size, BACKBONE.default_layer)
    return {"extract": first, "naive": {"process": naive.summary()}}


def caching(ctx: Context) -> dict:
    """Re-run on unchanged data, then after adding `added_fraction` new images."""
    plan = ctx.plan
    ctx.log("re-run extract on the unchanged photos")
    rerun = extract_record(cli_extract(ctx, ctx.data("photos"), ctx.caches("photos"), plan.input_size))
    ctx.log(f"add {plan.added} new images ({plan.added_fraction:.0%}) and re-run")
    from benchmarks.photos import link_photos, photo_path

    new = [photo_path(ctx.data("all"), i, plan.classes) for i in plan.ranges()["added"]]
    link_photos(new, ctx.data("all"), ctx.data("photos"))
    added = extract_record(cli_extract(ctx, ctx.data("photos"), ctx.caches("photos"), plan.input_size))
    return {"rerun": rerun, "added": added}


def naive_speed(ctx: Context) -> dict:
    """Whole runs of `extract` (A, each into a fresh cache) and the naive script (B), in `naive_speed_order`."""
    plan = ctx.plan
    data = ctx.data("naive-speed")
    runs = []
    for number, kind in enumerate(plan.naive_speed_order):
        ctx.log(f"{'extract' if kind == 'A' else 'naive script'} on {plan.naive_speed_images} JPEGs ({number + 1}/"
                f"{len(plan.naive_speed_order)})")
        if kind == "A":
            run = cli_extract(ctx, data, ctx.caches(f"naive-speed-{number}"), plan.input_size)
        else:
            run = naive_extract(ctx, data, plan.input_size, BACKBONE.default_layer)
        runs.append({"kind": "extract" if kind == "A" else "naive", "process": run.summary()})
    total = {kind: sum(r["process"]["wall_seconds"] for r in runs if r["kind"] == kind)
             for kind in ("extract", "naive")}
    return {"images": plan.naive_speed_images, "order": plan.naive_speed_order, "runs": runs,
            "wall_seconds": total, "speedup": round(total["naive"] / total["extract"], 3)}


# ------------------------------------------------------------------------------------------
# Targets 5 and 6: memory at two dataset sizes


def memory(ctx: Context) -> dict:
    plan = ctx.plan
    runs = {}
    for count in plan.memory_sizes:
        data = ctx.data(f"memory-{count}")
        ctx.log(f"extract {count} images at {plan.memory_input_size}px, layer {plan.memory_layer}")
        ours = extract_record(cli_extract(ctx, data, ctx.caches(f"memory-{count}"), plan.memory_input_size,
                                          layer=plan.memory_layer))
        ctx.log(f"naive script on the same {count} images")
        naive = naive_extract(ctx, data, plan.memory_input_size, plan.memory_layer)
        runs[str(count)] = {"extract": ours, "naive": {"process": naive.summary()}}
    small, large = (runs[str(count)] for count in plan.memory_sizes)
    return {
        "runs": runs,
        "extract_rss_growth": round(large["extract"]["process"]["peak_rss_mb"]
                                    / small["extract"]["process"]["peak_rss_mb"], 3),
        "naive_rss_growth": round(large["naive"]["process"]["peak_rss_mb"]
                                  / small["naive"]["process"]["peak_rss_mb"], 3),
    }


# ------------------------------------------------------------------------------------------
# Targets 4 and 7 (synthetic): heads on the dog-breed shapes


def heads(ctx: Context) -> dict:
    from benchmarks.feature_cache import write_feature_cache

    plan = ctx.plan
    ctx.log(f"write synthetic caches: {plan.heads_classes} classes, {plan.heads_splits}, {plan.heads_feature_shape}")
    caches = {dtype: write_feature_cache(ctx.caches(f"heads-{dtype}"), classes=plan.heads_classes,
                                         split_sizes=plan.heads_splits, feature_shape=plan.heads_feature_shape,
                                         store_dtype=dtype)
              for dtype in ("float32", "float16")}
    attempts = {}
    for repeat in range(plan.head_repeats):  # interleaved, so load changes hit every head alike
        for kind, recipe in HEAD_KINDS:
            label = f"{kind}-{recipe}" if recipe else kind
            ctx.log(f"fit-head {label} ({repeat + 1}/{plan.head_repeats})")
            attempts.setdefault(label, []).append(fit_head(caches["float32"], kind, recipe))
    fits = {label: _median_fit(runs) for label, runs in attempts.items()}
    ctx.log("fit-head logreg and svm on the float16 cache")
    float16_fits = {kind: fit_head(caches["float16"], kind, None) for kind in ("logreg", "svm")}
    return {
        "feature_bytes": {dtype: _feature_bytes(path) for dtype, path in caches.items()},
        "fits": fits,
        "float16_fits": float16_fits,
    }


def fit_head(cache: Path, kind: str, recipe: str | None) -> dict:
    """`fit-head` in its own process (see head_worker.py for what is timed)."""
    command = python_command(HEAD_WORKER, cache, "--head", kind)
    if recipe:
        command += ["--recipe", recipe]
    run = run_measured(command)
    return {"process": run.summary(), **run.json()}


def _median_fit(runs: list[dict]) -> dict:
    """The run with the median head time, plus every run's times (noise only ever adds time)."""
    ordered = sorted(runs, key=lambda run: run["head_seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "repeats": len(runs),
            "all_head_seconds": [run["head_seconds"] for run in runs],
            "all_fit_seconds": [run["fit_seconds"] for run in runs]}


def _feature_bytes(cache: Path) -> dict:
    import h5py

    with h5py.File(cache, "r") as handle:
        features = handle["features"]
        rows, row_bytes = features.shape[0], int(np.prod(features.shape[1:])) * features.dtype.itemsize
    return {"rows": rows, "bytes_per_row": row_bytes, "file_bytes_per_row": round(cache.stat().st_size / rows)}


# ------------------------------------------------------------------------------------------
# Targets 2 (accuracy) and 7 on real photos


def real_photos(ctx: Context) -> dict:
    """float32 vs bfloat16 compute, and float32 vs float16 storage, on ../shared/data/catsdogs."""
    if not ctx.plan.use_real_photos:
        return {"skipped": "smoke mode uses no real photos"}
    if not CATSDOGS.is_dir():
        return {"skipped": f"real photos not found at {CATSDOGS}"}
    cache_dir = ctx.caches("catsdogs")
    runs = {}
    for label, precision, store in (("float32", "float32", "float32"), ("bfloat16", "bfloat16", "float32"),
                                    ("float32-store-float16", "float32", "float16")):
        ctx.log(f"catsdogs: extract {label}")
        runs[label] = extract_record(cli_extract(ctx, CATSDOGS, cache_dir, BACKBONE.default_input_size, precision,
                                                 store))
    fits = {}
    for label, run in runs.items():
        kinds = ("logreg",) if label == "bfloat16" else ("logreg", "svm")
        for kind in kinds:
            ctx.log(f"catsdogs: fit-head {kind} on {label}")
            fits[f"{label}/{kind}"] = fit_head(Path(run["cache_path"]), kind, None)
    paths = {label: Path(run["cache_path"]) for label, run in runs.items()}
    return {
        "extract": runs,
        "fits": fits,
        "bfloat16_vs_float32": compare_features(paths["float32"], paths["bfloat16"]),
        "float16_store_vs_float32": compare_features(paths["float32"], paths["float32-store-float16"]),
        "feature_bytes": {label: _feature_bytes(path) for label, path in paths.items()},
    }


def compare_features(reference: Path, other: Path) -> dict:
    """Per-image cosine similarity and relative error of `other`'s features against `reference`'s."""
    from pipeline.cache.format import read_cache_info
    from pipeline.cache.rows import load_rows

    ref_info, other_info = read_cache_info(reference), read_cache_info(other)
    other_row = dict(zip(other_info.images.sha256, other_info.images.row))
    shas = [sha for sha in ref_info.images.sha256 if sha in other_row]
    ref_rows = [int(r) for sha, r in zip(ref_info.images.sha256, ref_info.images.row) if sha in other_row]
    a = load_rows(reference, np.array(ref_rows), pooling=None).reshape(len(shas), -1).astype(np.float64)
    b = load_rows(other, np.array([other_row[sha] for sha in shas]),
                  pooling=None).reshape(len(shas), -1).astype(np.float64)
    cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), _NORM_FLOOR)
    relative = np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(a, axis=1), _NORM_FLOOR)
    return {"images": len(shas), "mean_cosine": round(float(cosine.mean()), 6),
            "min_cosine": round(float(cosine.min()), 6), "mean_relative_error": float(relative.mean())}


# ------------------------------------------------------------------------------------------
# Target 8: an epoch of block5 fine-tuning from the boundary cache vs. from the images


def fine_tune_epoch(ctx: Context) -> dict:
    """Epochs from the block4_pool cache and from the JPEGs through frozen block1-4, alternated in one process."""
    plan = ctx.plan
    ctx.log(f"fine-tune block5: epochs from the boundary cache and from {plan.naive_speed_images} JPEGs, "
            f"{plan.finetune_order}")
    run = run_measured(python_command(FINETUNE_WORKER, ctx.data("naive-speed"), "--cache-dir", ctx.caches("finetune"),
                                      "--weights", ctx.weights, "--input-size", plan.input_size,
                                      "--batch-size", plan.finetune_batch_size, "--order", plan.finetune_order))
    return {**run.json(), "process": run.summary()}


SCENARIOS = {
    "input_pipeline": input_pipeline,
    "precision_speed": precision_speed,
    "full_size": full_size,
    "caching": caching,
    "naive_speed": naive_speed,
    "memory": memory,
    "heads": heads,
    "real_photos": real_photos,
    "fine_tune_epoch": fine_tune_epoch,
}


def prepare_data(ctx: Context) -> dict:
    """Write the photo-sized JPEGs once and link each scenario's dataset from them."""
    from benchmarks.photos import link_photos, write_photos

    plan = ctx.plan
    ctx.log(f"write {plan.images_needed} photo-sized JPEGs ({plan.photo_size[0]}x{plan.photo_size[1]})")
    paths = write_photos(ctx.data("all"), range(plan.images_needed), plan.classes, size=plan.photo_size)
    ranges = plan.ranges()
    chunk = plan.pipeline_chunk_images
    datasets = {name: ranges[name] for name in ("photos", "naive-speed")}
    datasets.update({f"memory-{count}": ranges[f"memory-{count}"] for count in plan.memory_sizes})
    datasets.update({f"chunk-{k}": ranges["chunks"][k * chunk:(k + 1) * chunk] for k in range(plan.pipeline_chunks)})
    for name, indexes in datasets.items():
        shutil.rmtree(ctx.data(name), ignore_errors=True)
        link_photos([paths[i] for i in indexes], ctx.data("all"), ctx.data(name))
    sizes = [p.stat().st_size for p in paths]
    return {"images": len(paths), "mean_jpeg_kb": round(sum(sizes) / len(sizes) / 1024, 1)}
