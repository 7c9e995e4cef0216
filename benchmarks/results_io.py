"""One JSON shape for every benchmark result, so one command can render the benchmarks page.

Each benchmark ends with ``write_result(name, columns, rows, notes=...)``, which writes
``benchmarks/results/<name>.json``::

    {"benchmark": name, "command": "python benchmarks/... --flags", "date": ISO-8601 UTC,
     "machine": {"cores", "threads", "loadavg", "torch", "python", "platform", "cpu", "cpu_capability"},
     "columns": [...], "rows": [{column: value, ...}, ...], "notes": "..."}

``threads`` is the torch thread count the figures were measured at; ``loadavg`` is the
1/5/15-minute load average when the benchmark ended (a loaded machine slows every row).
``cpu`` is the processor's model name and ``cpu_capability`` the vector instruction set torch's
kernels dispatch to (``AVX2``, ``AVX512``): this workplace lends machines of one kind that are not
one processor (an AVX-512 EPYC and an AVX2 one ran the same code 2.2x apart), so a figure is only
compared with one measured on the same processor.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model() -> str | None:
    """The processor's model name from ``/proc/cpuinfo`` (None where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine(threads: int | None = None) -> dict:
    """Cores, threads, load average, processor and versions of the machine the figures come from."""
    capability = None
    try:
        import torch

        torch_version = torch.__version__
        threads = torch.get_num_threads() if threads is None else threads
        capability = torch.backends.cpu.get_cpu_capability()
    except ImportError:  # a benchmark without torch
        torch_version = None
    return {
        "cores": os.cpu_count(),
        "threads": threads,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "torch": torch_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_capability": capability,
    }


def command_line(argv: list[str]) -> str:
    """``python <script> <args>`` with the script named from the repository root, whatever folder the
    benchmark was started from (``cd benchmarks && python bench_models.py`` records
    ``python benchmarks/bench_models.py``), so the recorded command repeats from the root."""
    script = Path(argv[0]).resolve() if argv and argv[0] else None
    root = RESULTS_DIR.parent.parent
    if script is not None and script.is_file() and script.is_relative_to(root):
        argv = [script.relative_to(root).as_posix(), *argv[1:]]
    return "python " + " ".join(shlex.quote(a) for a in argv)


def write_result(name: str, columns: list[str], rows: list[dict], notes: str = "",
                 threads: int | None = None, out_dir: str | Path | None = None) -> Path:
    """Write ``<out_dir or benchmarks/results>/<name>.json`` atomically and return its path."""
    out = Path(out_dir) if out_dir is not None else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "command": command_line(sys.argv),
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": machine(threads),
        "columns": list(columns),
        "rows": rows,
        "notes": notes,
    }
    path = out / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
