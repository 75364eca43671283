"""Peak memory and speed of audio pretraining (`zoo pretrain hubert|mert|beats`) on a corpus of
long recordings, so that memory that grows with the corpus (every recording held at the model's
rate: 230 MB an hour at 16 kHz) shows as a peak that climbs with --files x --minutes.

The corpus is --files WAV files of --minutes each, FSDD recordings end to end at --rate
(bench_scale.make_wav). Each recipe runs as a fresh `zoo pretrain` process; its peak RSS is
os.wait4's ru_maxrss, and its speed is read from the run's log.jsonl. --code runs another
checkout's zoo (e.g. a `git worktree` of an older commit) with this interpreter, to measure
before and after on one machine:

    python benchmarks/bench_pretrain_memory.py --files 120 --minutes 1 --steps 10 --recipes hubert
    python benchmarks/bench_pretrain_memory.py --files 60 --minutes 1 --recipes mert --options="--cqt-target log"
    python benchmarks/bench_pretrain_memory.py --files 4 --minutes 0.1 --steps 2 --batch-size 2   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_scale import make_wav
from common import machine_info

REPO = Path(__file__).resolve().parents[1]
CLI = "import sys, zoo; print('zoo from', zoo.__file__, file=sys.stderr); from zoo.cli import main; sys.exit(main())"
#: options that keep the teachers small, so that the run's memory is the corpus's and the model's
RECIPE_OPTIONS = {"hubert": ["--clusters", "50", "--kmeans-frames", "20000"],
                  "mert": ["--codebooks", "2", "--clusters", "32", "--kmeans-frames", "20000"],
                  "beats": []}


def make_corpus(folder: Path, files: int, minutes: float, rate: int) -> Path:
    """`files` WAV files of `minutes` each; each is its own file (links would share the page cache)."""
    folder.mkdir(parents=True)
    first = make_wav(folder / "000.wav", minutes, rate)
    for index in range(1, files):
        (folder / f"{index:03d}.wav").write_bytes(first.read_bytes())
    return folder


def run_pretrain(recipe: str, data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS (MB), wall seconds and steps/s of one `zoo pretrain RECIPE` process."""
    command = [sys.executable, "-c", CLI, "pretrain", recipe, "--data", str(data), "-o", str(out), "--steps",
               str(args.steps), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
               "--no-progress", *RECIPE_OPTIONS[recipe], *shlex.split(args.options)]
    errors_file = out.with_suffix(".stderr")
    start = time.perf_counter()
    with errors_file.open("w") as errors_out:  # a file, not a pipe: a full pipe would stall the run
        process = subprocess.Popen(command, cwd=args.code, stdout=subprocess.DEVNULL, stderr=errors_out)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    errors = errors_file.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"zoo pretrain {recipe} failed: {errors[-3000:]}")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    timed = records[-1]["elapsed"] - records[0]["elapsed"]
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024), "wall_seconds": round(seconds, 1),
            "steps_per_second": round((len(records) - 1) / timed, 3) if timed > 0 else None,
            "zoo": next((line for line in errors.splitlines() if line.startswith("zoo from")), "")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="hubert", help="comma-separated: hubert, mert, beats")
    parser.add_argument("--files", type=int, default=120)
    parser.add_argument("--minutes", type=float, default=1.0, help="length of each file")
    parser.add_argument("--rate", type=int, default=16000, help="the files' sampling rate")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose zoo runs (default: this one)")
    parser.add_argument("--options", default="",
                        help="further options of every recipe's command, e.g. --options='--cqt-target log' for mert")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-pretrain-") as folder:
        data = make_corpus(Path(folder) / "corpus", args.files, args.minutes, args.rate)
        for recipe in args.recipes.split(","):
            row = {"recipe": recipe, "corpus": f"{args.files} x {args.minutes:g} min at {args.rate} Hz",
                   **run_pretrain(recipe, data, Path(folder) / f"run-{recipe}", args)}
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    print(json.dumps({"machine": machine_info(args.threads), "steps": args.steps, "batch_size": args.batch_size,
                      "options": args.options, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
