"""Benchmark of the performance targets: every scenario side by side in one run.

    python benchmarks/bench.py [--smoke] [--out DIR] [--work DIR] [--only SCENARIO ...] [--photos N]

Generates the datasets it needs (photo-sized JPEGs; a synthetic dog-breed-sized feature cache),
runs each scenario of `scenarios.py` with the sizes of `plan.py` (full: 10-45 minutes on 2
CPU cores; `--smoke`: tiny images and random weights, for CI), and writes DIR/results.json and
DIR/benchmarks.md: the machine, a verdict per target and every measurement. Absolute times on a
shared machine are noise; the verdicts compare runs made side by side within this one run.
A scenario that fails is recorded under "errors" and the others still run; the exit status is
then 1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))  # this checkout's `benchmarks` and `pipeline`, whatever is installed

from benchmarks.measure import machine_info  # noqa: E402
from benchmarks.plan import BACKBONE, FULL, SMOKE  # noqa: E402
from benchmarks.report import markdown, verdicts  # noqa: E402
from benchmarks.scenarios import SCENARIOS, Context, prepare_data  # noqa: E402

DEFAULT_OUT = BENCH_DIR / "results"


def resolve_weights_argument(plan, work: Path) -> str:
    """The --weights value every run uses: the verified ImageNet VGG16 file, or "none" for smoke."""
    if plan.weights == "none":
        return "none"
    from pipeline.backbones.weights import resolve_weights

    resolved = resolve_weights(BACKBONE, plan.weights, work / "weights-cache", BACKBONE.default_input_size)
    if not resolved.verified:
        raise click.ClickException(f"the VGG16 weights found ({resolved.describe()}) are not verified ImageNet weights")
    return resolved.path


def run_benchmark(plan, out: Path, work: Path, only: tuple[str, ...] = (), log=print) -> dict:
    """Run the scenarios of `plan` and write `out`/results.json and `out`/benchmarks.md; return the results."""
    from pipeline.backbones.precision import resolve_precision
    from pipeline.cache.key import now_iso

    started = time.perf_counter()
    results = {"mode": plan.mode, "started": now_iso(), "plan": {k: str(v) for k, v in plan.__dict__.items()},
               "machine": machine_info(), "auto_precision": " ".join(resolve_precision("auto")),
               "scenarios": {}, "errors": {}}
    ctx = Context(plan=plan, work=work, weights=resolve_weights_argument(plan, work), log=log)
    results["data"] = prepare_data(ctx)
    for name, scenario in SCENARIOS.items():
        if only and name not in only:
            continue
        log(f"== {name}")
        try:
            results["scenarios"][name] = scenario(ctx)
        except Exception as error:  # noqa: BLE001 - recorded, and the remaining scenarios still run
            results["errors"][name] = f"{type(error).__name__}: {error}"
            log(f"   failed: {results['errors'][name]}")
    results["finished"] = now_iso()
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["verdicts"] = verdicts(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "benchmarks.md").write_text(markdown(results))
    return results


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--smoke", is_flag=True, help="Tiny sizes and random weights: checks the benchmark runs (for CI).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT, show_default=True,
              help="Where results.json and benchmarks.md are written.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Scratch folder for datasets and caches (default: a temporary folder, deleted afterwards).")
@click.option("--only", multiple=True, type=click.Choice(list(SCENARIOS)), help="Run only this scenario (repeatable).")
@click.option("--photos", type=click.IntRange(min=10), default=None,
              help="Images of the first-run / caching / naive dataset instead of the plan's (fast machines "
                   "need more for start-up costs to stop dominating).")
def main(smoke: bool, out: Path, work: Path | None, only: tuple[str, ...], photos: int | None):
    """Measure every performance target side by side and write a JSON + markdown report."""
    plan = SMOKE if smoke else FULL
    if photos is not None:
        plan = dataclasses.replace(plan, photos=photos)
    scratch = work or Path(tempfile.mkdtemp(prefix="bottleneck-bench-"))
    try:
        began = time.perf_counter()
        results = run_benchmark(plan, out, scratch, only,
                                log=lambda message: click.echo(f"[{time.perf_counter() - began:6.0f} s] {message}",
                                                               err=True))
    finally:
        if work is None:
            shutil.rmtree(scratch, ignore_errors=True)
    click.echo(f"wrote {out / 'results.json'} and {out / 'benchmarks.md'}", err=True)
    for row in results["verdicts"]:
        verdict = {True: "met", False: "NOT MET", None: "n/a"}[row["met"]]
        click.echo(f"{row['target']:<20} {verdict:<8} {row['measured']}")
    if results["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
