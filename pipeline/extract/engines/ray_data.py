"""`extract --engine ray`: the forward passes run on a pool of Ray Data actors; this process writes the cache.

The driver (this module) has already planned what is missing exactly as a local run does
(`pipeline.extract.run`). It packs the missing rows into the same slot-stable batches
(`pipeline.cache.slots.plan_batches`), makes a Ray Dataset with one row per planned batch, and
maps it with `BatchWorker` (`pipeline.extract.engines.ray_worker`) as a pool of actors, one
backbone each, on CPUs or GPUs. Every actor call computes exactly one batch a local run computes,
so the rows are bitwise a local run's at the same precision (same machine type and libraries).

Results are consumed as they arrive (`iter_batches`) and handed to the same background
`SegmentWriter` as the local loop, so finished rows are committed incrementally: a driver killed
at any moment leaves whole segments, and the next run (on either engine) plans only what is
missing. Ray restarts an actor that dies and retries its batch (Ray Data's defaults for actor
pools); an image that does not decode comes back as a failure row and is recorded like a local one.

Ray is imported only here and only when `--engine ray` is asked; without the `ray` extra the
run stops with a `UsageError` saying how to install it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.cache import slots
from pipeline.cache.format import partial_dir_of
from pipeline.cache.segments import SegmentWriter
from pipeline.data.views import parse_view_address
from pipeline.errors import PipelineError, UsageError, first_line
from pipeline.extract.engines.ray_worker import (
    ADDRESS,
    FAILURE,
    FEATURES,
    PLAN,
    REFUSAL_MARK,
    BatchWorker,
    WorkerSpec,
    encode_batch,
)
from pipeline.extract.loop import BackgroundWriter, LoopTimes, RowJob, non_finite_reasons

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e '.[ray]'"
#: CPUs each CPU actor reserves (it decodes its batch in that many threads, then runs the backbone).
CPUS_PER_WORKER = 1
#: Decoding threads of a GPU actor (it asks Ray for GPUs only): a GPU's forward pass is short next to
#: decoding a batch of JPEGs in one thread. A guess, not a measurement: this project has run no GPU actor.
GPU_WORKER_DECODE_THREADS = 4
#: Finished result blocks Ray Data keeps ready ahead of the writer.
PREFETCH_BLOCKS = 2
#: An actor whose constructor fails (refused weights, no access to the images) is not replaced more
#: than this many times in a row before the run stops with its message.
MAX_ACTOR_INIT_DEATHS = 1
#: Seconds to wait for a TCP answer at --ray-address before saying nobody is there.
CONNECT_TIMEOUT_SECONDS = 5
#: Seconds to wait, before shutting Ray down, for Ray Data's consumer threads in this process to leave
#: their Ray calls (after an interrupt they end within a fraction of a second, once the actors are killed).
CONSUMER_THREADS_GRACE_SECONDS = 30
#: How often to look at those threads while waiting.
CONSUMER_THREADS_POLL_SECONDS = 0.02
#: Environment of every actor (besides the code: `_connect`): TensorFlow's C++ chatter off.
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3"}


@dataclass(frozen=True)
class RayRun:
    """How the Ray engine runs: `address` (None starts a local Ray), actors and GPUs per actor."""

    address: str | None
    workers: int | None
    gpus_per_worker: float


def import_ray():
    """The `ray` module, or a `UsageError` saying how to install it."""
    try:
        import ray
        import ray.data  # the engine needs Ray Data, not only Ray core
    except ImportError as error:
        raise UsageError(
            f"--engine ray needs Ray Data, which is not installed here ({error}); install the extra with "
            f"{INSTALL_HINT} (or `pip install 'ray[data]>=2.10'`), or run without --engine ray to extract in "
            "this process") from None
    return ray


def check_engine(address: str | None) -> None:
    """Before any work: Ray Data is installed, and something answers at `address` (a `PipelineError` if not)."""
    import_ray()
    _probe(address)


def compute_rows_on_ray(job: RowJob, worker_spec: WorkerSpec, engine: RayRun, decode_failures: dict,
                        progress: Callable[[int, int], None] | None = None,
                        worker_class: type | None = None) -> tuple[LoopTimes, int]:
    """Compute `job.items` on Ray actors and commit them as segments of `job.cache_path`.

    Returns (timings, actors used). Undecodable images land in `decode_failures` (sha256 -> reason).
    If Ray is already initialised in this process, its cluster is used as is; otherwise the run joins
    `engine.address` (or starts a local Ray) and shuts it down at the end. `worker_class` is the
    actor class (a `BatchWorker`; tests pass subclasses that fail on purpose).
    """
    ray = import_ray()
    plan = slots.plan_batches(job.items, job.ordinals, job.batch_size)
    started_here = not ray.is_initialized()
    times, opened = LoopTimes(), time.perf_counter()
    if started_here:
        _connect(ray, engine.address)
    threads_before = set(threading.enumerate())
    try:
        workers = engine.workers or _default_workers(ray, engine.gpus_per_worker)
        workers = max(1, min(workers, len(plan)))
        threads = GPU_WORKER_DECODE_THREADS if engine.gpus_per_worker else CPUS_PER_WORKER
        dataset = _dataset(ray, plan, worker_class or BatchWorker, replace(worker_spec, decode_threads=threads),
                           workers, engine.gpus_per_worker)
        _consume(dataset, job, decode_failures, progress, times, opened)
    finally:
        if started_here:
            tick = time.perf_counter()
            wait_for_threads_to_settle(threads_before, CONSUMER_THREADS_GRACE_SECONDS)
            ray.shutdown()
            log.info("Ray shut down in %.1fs", time.perf_counter() - tick)
    return times, workers


def wait_for_threads_to_settle(threads_before: set[threading.Thread], grace: float) -> bool:
    """Wait (at most `grace` s) until every thread started since `threads_before` has ended or is parked.

    Ray Data consumes the results in background threads of this process; one still inside a Ray call
    when `ray.shutdown()` runs makes Ray's core end the process with exit code 1 (seen on SIGTERM under
    load), losing the interrupt's message and code. A thread parked on a condition with no timeout
    (Ray Data's idle block prefetcher) makes no Ray call until woken, so it is not waited for.
    Returns False (and logs which) if some were still busy at the deadline.
    """
    deadline = time.monotonic() + grace
    while True:
        frames = sys._current_frames()
        busy = [t for t in threading.enumerate() if t not in threads_before and not _parked(frames.get(t.ident))]
        if not busy:
            return True
        if time.monotonic() >= deadline:
            names = ", ".join(t.name for t in busy)
            log.warning("shutting Ray down while %d thread(s) still run: %s", len(busy), names)
            return False
        time.sleep(CONSUMER_THREADS_POLL_SECONDS)


def _parked(frame) -> bool:
    """True for a thread whose innermost Python frame waits on a `threading.Condition` without a timeout."""
    waiting = frame is not None and frame.f_code is threading.Condition.wait.__code__
    return waiting and frame.f_locals.get("timeout") is None


def _connect(ray, address: str | None) -> None:
    """Join the cluster at `address`, or start a local Ray instance (None); actors import this checkout's code."""
    package_root = str(Path(__file__).resolve().parents[3])
    pythonpath = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    runtime_env = {"env_vars": {**QUIET_TF, "PYTHONPATH": pythonpath}}
    if address is not None and address != "local":  # a remote cluster gets the code itself, not a path
        import pipeline

        runtime_env = {"env_vars": dict(QUIET_TF), "py_modules": [str(Path(pipeline.__file__).parent)]}
    _probe(address)
    in_main_thread = threading.current_thread() is threading.main_thread()
    on_sigterm = signal.getsignal(signal.SIGTERM) if in_main_thread else None
    try:
        ray.init(address=None if address == "local" else address, runtime_env=runtime_env,
                 include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 configure_logging=True)
        if on_sigterm is not None:  # Ray's core installs a crash handler that aborts on SIGTERM: keep ours
            signal.signal(signal.SIGTERM, on_sigterm)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise PipelineError(
            f"could not connect to the Ray cluster at {address!r} ({first_line(error)}); start one with "
            "`ray start --head` (see docs/cluster.md), pass its address with --ray-address (or `auto` on a node of "
            "the cluster), or leave --ray-address out to start a local Ray instance") from None


def _probe(address: str | None) -> None:
    """Fail in seconds on a host:port nobody listens on (`ray.init` would retry for minutes)."""
    if address in (None, "local", "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_SECONDS).close()
    except OSError as error:
        raise PipelineError(
            f"nothing answers at the Ray address {address} ({error.strerror or error}); start the cluster with "
            "`ray start --head` (see docs/cluster.md), check the address it printed, or leave --ray-address out to "
            "start a local Ray instance") from None


def _default_workers(ray, gpus_per_worker: float) -> int:
    """As many actors as the cluster has GPUs (for GPU actors) or CPUs for."""
    resources = ray.cluster_resources()
    if gpus_per_worker:
        return max(1, int(resources.get("GPU", 0) // gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) // CPUS_PER_WORKER))


def _dataset(ray, plan: list[slots.PlannedBatch], worker_class: type, worker_spec: WorkerSpec, workers: int,
             gpus: float):
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # the CLI shows its own progress (-v shows Ray's)
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    context.print_on_execution_start = False
    context.max_consecutive_actor_init_deaths = MAX_ACTOR_INIT_DEATHS
    # One block per planned batch, so every actor is fed as soon as it is up.
    dataset = ray.data.from_items([{PLAN: encode_batch(batch)} for batch in plan], override_num_blocks=len(plan))
    resources = {"num_gpus": gpus} if gpus else {"num_cpus": CPUS_PER_WORKER}
    return dataset.map_batches(worker_class, batch_size=1, batch_format="numpy",
                               compute=ray.data.ActorPoolStrategy(size=workers),
                               fn_constructor_kwargs={"spec": worker_spec}, **resources)

def _consume(dataset, job: RowJob, decode_failures: dict, progress, times: LoopTimes, opened: float) -> None:
    """Write the rows as they arrive; on any exit (an interrupt too) commit what was received.

    `times.startup` is from `opened` (before Ray was started or joined) to the first rows back.
    """
    writer, done = None, 0
    results = iter(dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=PREFETCH_BLOCKS))
    try:
        while True:
            tick = time.perf_counter()
            try:
                block = next(results, None)
            except Exception as error:  # noqa: BLE001 - a refused worker becomes the user's message
                raise _explain(error) from None
            if block is None:
                break
            if done == 0:  # Ray start-up and the first actor's backbone build: start-up, not throughput
                times.startup = time.perf_counter() - opened
                first = time.perf_counter()
            else:
                times.waiting_for_images += time.perf_counter() - tick
            failed = [i for i, reason in enumerate(block[FAILURE]) if reason]
            decode_failures.update((parse_view_address(str(block[ADDRESS][i]))[0], str(block[FAILURE][i]))
                                   for i in failed)
            keep = [i for i, reason in enumerate(block[FAILURE]) if not reason]
            if keep:
                if writer is None:
                    writer = BackgroundWriter(SegmentWriter(
                        partial_dir_of(job.cache_path), job.key, block[FEATURES].shape[1:], job.store_dtype,
                        max_rows=job.commit_rows))
                rows = block[FEATURES][keep].astype(job.store_dtype)  # the actors already cast them
                bad = non_finite_reasons(rows, rows)
                decode_failures.update((parse_view_address(str(block[ADDRESS][keep[i]]))[0], reason)
                                       for i, reason in bad.items())
                finite = [i for i in range(len(keep)) if i not in bad]
                tick = time.perf_counter()
                if finite:
                    writer.put([str(block[ADDRESS][keep[i]]) for i in finite], rows[finite])
                times.waiting_for_writer += time.perf_counter() - tick
            done += len(block[ADDRESS])
            if progress is not None:
                progress(done, len(job.items))
            times.forward = time.perf_counter() - first  # actors' wall time after the first result
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
        if writer is not None:
            writer.close()


def _explain(error: Exception) -> Exception:
    """A worker's refusal as a `PipelineError` with its message; anything else unchanged (a bug, or Ray's own)."""
    text = str(error)
    if REFUSAL_MARK in text:
        message = first_line(text.split(REFUSAL_MARK, 1)[1], empty="no reason given")
        return PipelineError(f"a Ray worker refused to compute rows, so nothing of it was written: {message}")
    return error
