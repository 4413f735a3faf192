"""What every benchmark table names and how it times: the CPU model, and the median of repeated calls."""
from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``run()`` over ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def versions_header() -> str:
    """``"<CPU model>, <n> cores; torch <v>, onnxruntime <v>"``: what every CPU benchmark table names."""
    import torch  # start-up time: the data benchmarks import this module without torch

    try:
        import onnxruntime  # an optional dependency

        runtime = f"onnxruntime {onnxruntime.__version__}"
    except ImportError:
        runtime = "no onnxruntime"
    return f"{cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__.split('+')[0]}, {runtime}"


def load_average() -> float:
    """The 1-minute load average (NaN where the system has none): printed beside each measurement."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
