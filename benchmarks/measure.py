"""Measuring one command: wall time and peak memory of a child process, and the machine it ran on.

Peak memory is the child's peak resident set size as the kernel reports it to `wait4` (Linux:
kilobytes, the high-water mark of that one process), so every measured command runs in its own
process and measurements never mix. The command is started by `benchmarks/launch.py`, a bare
interpreter, because Linux carries a parent's peak across `fork` + `exec` into the child's.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).with_name("launch.py")
_KIB = 1024
_STDERR_TAIL = 3000
#: CPU feature flags that decide which precisions are fast, in report order; a superset of
#: pipeline.backbones.precision.BF16_CPU_FLAGS, which the report checks for bfloat16 hardware.
INTERESTING_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


class CommandFailed(RuntimeError):
    """A measured command exited with an error."""


@dataclass(frozen=True)
class Measured:
    """Outcome of one command."""

    command: list
    wall_seconds: float
    cpu_seconds: float  # user + system time of the process and the children it waited for
    peak_rss_mb: float
    exit_code: int
    stdout: str
    stderr_tail: str

    def json(self) -> dict:
        """The command's stdout parsed as JSON (its last non-empty line)."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        if not lines:
            raise CommandFailed(f"{' '.join(self.command)} printed nothing; stderr:\n{self.stderr_tail}")
        return json.loads(lines[-1])

    def summary(self) -> dict:
        data = asdict(self)
        data.pop("stdout")
        data.pop("stderr_tail")
        data["command"] = " ".join(str(part) for part in self.command)
        return data


def child_env() -> dict:
    """Environment for children: this checkout's `pipeline` first, TensorFlow's chatter off."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_measured(command: list, check: bool = True) -> Measured:
    """Run `command` (cwd: the repository root) and measure its wall time and peak RSS."""
    command = [str(part) for part in command]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r", suffix=".json") as report:
        launcher = [sys.executable, "-S", str(LAUNCHER), report.name, *command]
        subprocess.run(launcher, cwd=REPO_ROOT, env=child_env(), stdout=out, stderr=err, check=True)
        usage = json.loads(Path(report.name).read_text())
        out.seek(0)
        err.seek(0)
        result = Measured(command, round(usage["wall_seconds"], 3), round(usage["cpu_seconds"], 3),
                          round(usage["maxrss_kb"] / _KIB, 1), usage["exit_code"], out.read(),
                          err.read()[-_STDERR_TAIL:])
    if check and result.exit_code != 0:
        raise CommandFailed(f"{' '.join(command)} failed with exit code {result.exit_code}:\n{result.stderr_tail}")
    return result


def python_command(*args) -> list:
    """A command running this interpreter."""
    return [sys.executable, *args]


def machine_info() -> dict:
    """CPU model, flags that matter, cores, memory, OS, GPUs, load and library versions."""
    from pipeline.backbones.precision import cpu_flags, nvidia_gpu_count
    from pipeline.cache.key import library_versions

    cpuinfo = _read("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    flags = cpu_flags()
    meminfo = _read("/proc/meminfo")
    total_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), 0)
    return {
        "cpu_model": model or platform.processor(),
        "cpu_flags": {flag: flag in flags for flag in INTERESTING_FLAGS},
        "cores_visible": len(os.sched_getaffinity(0)),
        "memory_gib": round(total_kb / _KIB / _KIB, 1),
        "gpus": nvidia_gpu_count(),  # every NVIDIA GPU, with tensor cores or not
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": library_versions(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
