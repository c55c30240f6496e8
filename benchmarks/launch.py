"""Run one command and report its own wall time, CPU time and peak memory, from a small process.

Linux records a process's peak resident set size across `exec`, so a child forked from a large
parent (a benchmark driver or a test process that has loaded TensorFlow) reports at least the
parent's peak. `run_measured` therefore starts this script - a bare interpreter of a few MB -
which starts the measured command and writes what `wait4` says about it, as JSON, to the file
named by its first argument. Usage: `python launch.py RESULT_FILE COMMAND...`.
"""

import json
import os
import subprocess
import sys
import time


def main(result_file: str, command: list) -> int:
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    exit_code = os.waitstatus_to_exitcode(status)
    with open(result_file, "w") as handle:
        json.dump({"exit_code": exit_code, "wall_seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                   "maxrss_kb": usage.ru_maxrss}, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
