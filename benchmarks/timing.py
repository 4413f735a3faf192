"""What every benchmark table names and how it times: the CPU model, and the median of repeated calls."""
from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, Tuple

import torch


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


def interleaved_ms(runners: Dict[str, Callable], batches: Dict[int, object],
                   repeats: int) -> Dict[Tuple[str, int], float]:
    """Median ms per image of each runner on each batch, the runners taken in turns."""
    times = {(name, size): [] for name in runners for size in batches}
    with torch.no_grad():
        for name, run in runners.items():
            for batch in batches.values():
                run(batch)  # warm-up
        for _ in range(repeats):
            for size, batch in batches.items():
                for name, run in runners.items():
                    start = time.perf_counter()
                    run(batch)
                    times[(name, size)].append((time.perf_counter() - start) / size)
    return {key: statistics.median(values) * 1e3 for key, values in times.items()}
