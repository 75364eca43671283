"""Helpers shared by the benchmarks: machine description, peak memory, subprocess
workers and Markdown tables.

Peak memory is resident set size (RSS) read from /proc/self/status: `VmHWM` (the
process's high-water mark) minus `VmRSS` just before the measured call, after the peak
was reset by writing "5" to /proc/self/clear_refs (Linux >= 4.0). Where that file cannot
be written, `ru_maxrss` is used instead, which is only right in a fresh process whose
set-up never went above what the measured call adds. Before each baseline the free heap
is returned to the OS (`malloc_trim`), and each case should still run in its own
subprocess (`run_worker`), so that one case's allocator state cannot hide another's peak.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.io import atomic_write_text

MIB = 1024 * 1024
#: prefix of the one stdout line through which a worker returns its result
RESULT_PREFIX = "BENCH_RESULT "


def cpu_model() -> str:
    """The CPU model name as /proc/cpuinfo gives it (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """What a result table needs to be compared with another run."""
    import torch

    info = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def _status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss() -> int:
    """Resident set size now, in bytes."""
    kib = _status_kib("VmRSS")
    if kib is None:  # no procfs: the best available is the peak so far
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return kib * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """Highest RSS since the last reset (or process start), in bytes."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024


def release_free_memory() -> None:
    """Collect garbage and hand the allocator's free heap back to the OS (glibc malloc_trim).

    Called before a baseline so that memory freed by an earlier call but kept by malloc
    neither inflates the baseline nor hides the next call's peak.
    """
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass
class PeakMemory:
    """Context manager: `added` = peak RSS during the block minus RSS at its start (bytes).

    The baseline is taken after a garbage collection and a malloc_trim, so it holds what
    the caller keeps alive (model, inputs) and little else.
    """

    baseline: int = 0
    peak: int = 0
    method: str = ""

    def __enter__(self) -> PeakMemory:
        release_free_memory()
        self.baseline = current_rss()
        self.method = "VmHWM after clear_refs" if reset_peak_rss() else "ru_maxrss (no reset)"
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = peak_rss()

    @property
    def added(self) -> int:
        return max(self.peak - self.baseline, 0)


class CudaPeakMemory(PeakMemory):
    """`PeakMemory` of the GPU: the caching allocator's peak during the block minus what
    was allocated at its start, since on CUDA the host's RSS says nothing of the model's work."""

    def __enter__(self) -> CudaPeakMemory:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.baseline = torch.cuda.memory_allocated()
        self.method = "torch.cuda.max_memory_allocated"
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.cuda.synchronize()
        self.peak = torch.cuda.max_memory_allocated()


def memory_header(summary: dict[str, Any]) -> str:
    """The memory column's title: GPU memory for a CUDA run, the process's RSS otherwise."""
    return "peak GPU memory added (MiB)" if summary["args"]["device"].startswith("cuda") else "peak RSS added (MiB)"


def run_worker(script: str | Path, payload: dict[str, Any], timeout: float | None = None,
               python: str = sys.executable, env: dict[str, str] | None = None,
               cwd: str | None = None) -> dict[str, Any]:
    """Run `python script --worker JSON` in a fresh process and return the dict it reports.

    The worker reports by calling `report(result)`; anything else it prints is passed
    through to stderr so that progress stays visible. `python`, `env` (added to the
    current environment) and `cwd` let a worker run under another interpreter, e.g. an
    upstream project's own environment.
    """
    completed = subprocess.run(
        [python, str(script), "--worker", json.dumps(payload)],
        stdout=subprocess.PIPE, text=True, timeout=timeout, check=False, env={**os.environ, **(env or {})}, cwd=cwd,
    )
    result = None
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
        else:
            print(line, file=sys.stderr)
    if completed.returncode != 0 or result is None:
        raise RuntimeError(f"benchmark worker {payload} failed with exit code {completed.returncode}")
    return result


def report(result: dict[str, Any]) -> None:
    """Hand a worker's result back to `run_worker`."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_facts(folder: Path) -> str:
    """Steps and training wall time of a `zoo pretrain` run folder, read off the last line of its log."""
    last = json.loads((Path(folder) / "log.jsonl").read_text().splitlines()[-1])
    elapsed = last["elapsed"]
    return f"{last['step']} steps, " + (f"{elapsed / 60:.1f} min" if elapsed >= 600 else f"{elapsed:.0f} s")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def mib(num_bytes: float) -> str:
    return f"{num_bytes / MIB:,.0f}"


def add_case_arguments(parser: argparse.ArgumentParser, cases: Sequence[str], bf16_help: str) -> None:
    """The options of a benchmark that runs named cases, each in its own worker process."""
    parser.add_argument("--cases", default=",".join(cases), help="comma-separated, from %(default)s")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per path (default: 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help=bf16_help)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead of JSON")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--render", type=Path, metavar="JSON", help="print the table of a --json file, run nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)


def check_cases(parser: argparse.ArgumentParser, args: argparse.Namespace, cases: Sequence[str]) -> None:
    """Turn `--cases` into a list, refusing names the benchmark does not know."""
    args.cases = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = sorted(set(args.cases) - set(cases))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(cases)}")


def parse_case_args(description: str, cases: Sequence[str], bf16_help: str,
                    argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments of a case benchmark with no options of its own (`add_case_arguments`)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_case_arguments(parser, cases, bf16_help)
    args = parser.parse_args(argv)
    if args.worker is None and args.render is None:
        check_cases(parser, args, cases)
    return args


def serve(args: argparse.Namespace, worker: Callable[[dict[str, Any]], dict[str, Any]],
          markdown: Callable[[dict[str, Any]], str], run: Callable[[], dict[str, Any]]) -> None:
    """The main of a benchmark whose measurements run in worker processes: be the worker
    (`--worker`), render a saved run (`--render`, where the benchmark has it), or `run()` and
    print the summary it returns (Markdown with `--markdown`), also saving it with `--json`."""
    if args.worker is not None:
        report(worker(json.loads(args.worker)))
        return
    if getattr(args, "render", None) is not None:
        print(markdown(json.loads(args.render.read_text())))
        return
    summary = run()
    print(markdown(summary) if args.markdown else json.dumps(summary, indent=2), flush=True)
    if args.json:  # after the table is shown: a run of minutes was lost where runs/ did not exist yet
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(summary, indent=2))


def run_cases(script: Path, args: argparse.Namespace, worker: Callable[[dict[str, Any]], dict[str, Any]],
              markdown: Callable[[dict[str, Any]], str], speed_key: str = "audio_per_second",
              **spec: Any) -> None:
    """The main of a case benchmark (`serve`): every case in a fresh worker process. `spec`
    adds fields to what each worker gets; workers report their speed per path under
    `speed_key` (`audio_per_second` unless told), which the progress lines print."""
    def run() -> dict[str, Any]:
        started = time.perf_counter()
        machine = machine_info(args.threads)
        results = []
        for case in args.cases:
            results.append(run_worker(script, {"case": case, "repeats": args.repeats, "threads": args.threads,
                                               "device": args.device, "bf16": args.bf16, **spec}))
            speeds = ", ".join(f"{path} {value:.1f}" for path, value in results[-1][speed_key].items())
            print(f"{case}: {speed_key.replace('_', ' ')} {speeds}", file=sys.stderr, flush=True)
        machine["total_seconds"] = round(time.perf_counter() - started)
        return {"machine": machine, "args": {**vars(args), "json": str(args.json), "render": None},
                "results": results}

    serve(args, worker, markdown, run)


def summary_header(summary: dict[str, Any]) -> str:
    """The line above a `run_cases` table: machine, versions, device and load, so that
    rows from different runs can be told apart."""
    machine, args = summary["machine"], summary["args"]
    versions = f"torch {machine['torch']}" + (f", transformers {machine['transformers']}"
                                              if "transformers" in machine else "")
    return (f"{machine['cpu']}, {machine['torch_threads']} thread(s), {versions}, device {args['device']}"
            f"{' bf16' if args.get('bf16') else ''}, load {machine['load_average_1min']:.1f}; "
            f"{machine['total_seconds']} s in all\n")


def timed_rounds(calls: dict[str, Callable[[], Any]], repeats: int, device: str, calls_per_round: int = 1):
    """Seconds per round, peak memory added (RSS, or GPU memory on CUDA) and the last output
    of every path (the keys of `calls`), in rounds whose order alternates so that neither
    path always runs warm."""
    import torch

    paths = list(calls)
    seconds: dict[str, list[float]] = {path: [] for path in paths}
    peaks: dict[str, int] = {path: 0 for path in paths}
    outputs: dict[str, Any] = {}
    method = ""
    measure = CudaPeakMemory if device.startswith("cuda") else PeakMemory
    for round_index in range(repeats):
        for path in paths if round_index % 2 == 0 else paths[::-1]:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            with measure() as memory:
                start = time.perf_counter()
                for _ in range(calls_per_round):
                    outputs[path] = calls[path]()
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                seconds[path].append(time.perf_counter() - start)
            peaks[path], method = max(peaks[path], memory.added), memory.method
    return seconds, peaks, outputs, method
