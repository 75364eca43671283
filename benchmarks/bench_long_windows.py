"""A long recording file read a window at a time (`LongRecording`) against the same recording
decoded whole first, as the zoo read it before 2346dc0, in the same run: peak RSS added, wall
time and the difference of the rows.

Two uses, each case in a fresh process (`run_worker`), the model loaded before the baseline:
- embed: `model.embed([path])` of one file of --minutes, against `model.embed([prepare(path)])`;
- batch: `processor.training_batch(files)` (what `zoo finetune` collates) of --files files of
  --minutes, against a random window of each one's whole decoding (the same seed), --batches
  times in a row (with --do-normalize, a file's scale is taken at its first batch).

    python benchmarks/bench_long_windows.py --minutes 60 --rate 44100 --channels 2 --markdown
    python benchmarks/bench_long_windows.py --uses batch --files 8 --minutes 4 --markdown
    python benchmarks/bench_long_windows.py --uses batch --files 8 --minutes 4 --batches 5 --do-normalize --markdown
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_scale import make_wav
from common import PeakMemory, machine_info, markdown_table, report, run_worker

SCRIPT = Path(__file__).resolve()


def worker(payload: dict[str, Any]) -> dict[str, Any]:
    import torch

    import zoo

    torch.set_num_threads(payload["threads"])
    model = zoo.load(payload["model"])
    processor, files = model.processor, payload["files"]
    processor.do_normalize = payload["do_normalize"]
    torch.manual_seed(0)
    with PeakMemory() as memory:
        start = time.perf_counter()
        if payload["use"] == "embed" and payload["whole"]:
            rows = model.embed([processor.prepare(files[0])], sampling_rate=processor.sampling_rate, progress=False)
        elif payload["use"] == "embed":
            rows = model.embed(files[:1], progress=False)
        else:
            for _ in range(payload["batches"]):
                rows = batch(processor, files, payload["whole"])
        seconds = (time.perf_counter() - start) / (1 if payload["use"] == "embed" else payload["batches"])
    sample = rows.flatten()[:: payload["stride"]].tolist()
    return {"seconds": seconds, "added_mib": memory.added / 2**20, "rows": sample}


def batch(processor: Any, files: list[str], whole: bool) -> Any:
    """A training batch's waveforms: a random window of each file, cut from its whole decoding
    (as before 5194243) or decoded alone."""
    if whole:
        return processor.collate([processor.random_window(processor.prepare(path)) for path in files])["input_values"]
    return processor.training_batch(files)["input_values"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uses", default="embed,batch")
    parser.add_argument("--model", default="hubert-tiny-fsdd")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--files", type=int, default=8, help="batch: recordings in the batch")
    parser.add_argument("--rate", type=int, default=44100)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=1, help="batch: batches made in a row (seconds: per batch)")
    parser.add_argument("--do-normalize", action="store_true", help="normalise each recording (as HuBERT-large)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        report(worker(json.loads(args.worker)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for use in args.uses.split(","):
            count = 1 if use == "embed" else args.files
            files = [str(make_wav(Path(folder) / f"{use}{index}.flac", args.minutes, args.rate, args.channels))
                     for index in range(count)]
            payload = {"model": args.model, "files": files, "use": use, "threads": args.threads,
                       "batches": args.batches, "do_normalize": args.do_normalize,
                       "stride": 1 if use == "embed" else 997}
            whole, windows = (run_worker(SCRIPT, {**payload, "whole": flag}) for flag in (True, False))
            difference = max(abs(a - b) for a, b in zip(whole["rows"], windows["rows"]))
            input_name = (f"{count} x {args.minutes:g} min FLAC, {args.rate} Hz, {args.channels} ch"
                          + (", do_normalize" if args.do_normalize else "")
                          + (f", {args.batches} batches" if use == "batch" and args.batches > 1 else ""))
            rows.append({"use": use, "input": input_name, "whole_mib": round(whole["added_mib"]),
                         "windows_mib": round(windows["added_mib"]), "whole_s": round(whole["seconds"], 2),
                         "windows_s": round(windows["seconds"], 2), "max_abs_diff": difference})
            print(", ".join(str(value) for value in rows[-1].values()), file=sys.stderr, flush=True)
    if args.markdown:
        print(markdown_table(["use", "input", "whole: peak RSS added (MiB)", "windows: peak RSS added (MiB)",
                              "whole (s)", "windows (s)", "speed-up", "max abs diff"],
                             [[row["use"], row["input"], f"{row['whole_mib']:,}", f"{row['windows_mib']:,}",
                               f"{row['whole_s']:.1f}", f"{row['windows_s']:.1f}",
                               f"{row['whole_s'] / row['windows_s']:.1f}x", f"{row['max_abs_diff']:.1e}"]
                              for row in rows]))
    else:
        print(json.dumps({"machine": machine_info(args.threads), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
