"""`zoo embed` at a user's scale: peak RSS and wall time of the command on inputs made here from
../shared/data, so that memory which grows with the input (a list kept, a whole file read, a
join in memory) shows as a row whose peak climbs with its size.

Cases (each a fresh `zoo embed` process, its peak RSS from os.wait4):
- audio-file: one WAV of M minutes (FSDD recordings end to end, 16 kHz) per audio model;
- audio-stereo: the same at 44.1 kHz on two channels (hubert-tiny-fsdd);
- audio-folder: N FSDD files in a folder (hubert-tiny-fsdd);
- audio-long-folder: N links to one WAV of M minutes in a folder (hubert-tiny-fsdd);
- tokens: the same folders embedded with `--pool none` into .parquet, a row of tokens per file (beats-tiny);
- table: N UCI Adult rows resampled, as .csv and .parquet (tjepa-adult);
- images: N CIFAR-10 JPEGs in a folder, and the CIFAR-10 parquet file (gmml-vit-tiny-cifar10);
- graphs: a TU set of ../shared/data/tu by its readout, at the last layer and at layers 1 and 2
  (graphmae-nci1's architecture, random init: NCI1's 4,110 graphs, 122,747 nodes).

    python benchmarks/bench_scale.py --cases audio-file --minutes 10,60 --markdown
    python benchmarks/bench_scale.py --cases audio-long-folder --long-files 1,12 --long-minutes 10 --markdown
    python benchmarks/bench_scale.py --cases table --rows 100000,1000000
    python benchmarks/bench_scale.py --cases tokens --long-files 1,12 --long-minutes 5 --threads 2 --markdown
    python benchmarks/bench_scale.py --cases graphs --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine_info, markdown_table

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLI = "import sys; from zoo.cli import main; sys.exit(main())"
AUDIO_MODELS = ("hubert-tiny-fsdd", "beats-tiny", "mert-tiny")


def run_embed(arguments: list[str], threads: int) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one `zoo embed ARGUMENTS` process."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", CLI, "embed", *arguments, "--threads", str(threads)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"zoo embed {' '.join(arguments)} failed: {process.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, seconds


def fsdd_files() -> list[Path]:
    return sorted((SHARED / "fsdd" / "recordings").glob("*.wav"))


def make_wav(path: Path, minutes: float, rate: int = 16000, channels: int = 1) -> Path:
    """FSDD recordings end to end (8 kHz, linearly interpolated to `rate`), `minutes` long, written
    a recording at a time, on `channels` equal channels."""
    import soundfile

    wanted, files = int(minutes * 60 * rate), fsdd_files()
    with soundfile.SoundFile(path, "w", rate, channels, subtype="PCM_16") as out:
        written = 0
        while written < wanted:
            samples, _ = soundfile.read(files[written % len(files)], dtype="float32")
            resampled = np.interp(np.arange(len(samples) * rate // 8000) * 8000 / rate, np.arange(len(samples)),
                                  samples)[: wanted - written]
            out.write(np.repeat(resampled[:, None], channels, axis=1))
            written += len(resampled)
    return path


def make_table(folder: Path, rows: int) -> list[Path]:
    """`rows` UCI Adult training rows drawn with replacement (seed 0), as .csv and .parquet."""
    import pandas as pd

    frame = pd.read_csv(SHARED / "adult" / "adult.data", skipinitialspace=True)
    big = frame.iloc[np.random.default_rng(0).integers(0, len(frame), rows)].reset_index(drop=True)
    big.to_csv(folder / f"adult-{rows}.csv", index=False)
    big.to_parquet(folder / f"adult-{rows}.parquet", index=False)
    return [folder / f"adult-{rows}.csv", folder / f"adult-{rows}.parquet"]


def make_images(folder: Path, count: int) -> Path:
    """The first `count` CIFAR-10 training JPEGs as files, 1000 to a folder."""
    import pyarrow.parquet as pq

    table = pq.read_table(SHARED / "cifar10" / "train-00000-of-00001.parquet", columns=["img"]).slice(0, count)
    for index, row in enumerate(table.column("img").to_pylist()):
        (folder / f"{index // 1000:03d}").mkdir(exist_ok=True)
        (folder / f"{index // 1000:03d}" / f"{index:05d}.jpg").write_bytes(row["bytes"])
    return folder


def linked_folders(work: Path, kind: str, counts: list[int], minutes: float):
    """(count, folder) of folders holding `count` links to one WAV of `minutes` (made once)."""
    wav = make_wav(work / f"{minutes:g}min-{kind}.wav", minutes)
    for count in counts:
        folder = work / f"{kind}-{count}"
        folder.mkdir()
        for index in range(count):
            (folder / f"{index:03d}.wav").symlink_to(wav)
        yield count, folder


def cases(args: argparse.Namespace, work: Path):
    """(input, size, model, arguments) of every case asked for; inputs are made as they are reached."""
    if "audio-file" in args.cases:
        for minutes in args.minutes:
            wav = make_wav(work / f"{minutes:g}min.wav", minutes)
            for model in AUDIO_MODELS:
                yield "wav file", f"{minutes:g} min", model, [model, str(wav), "-o", str(work / "out.npy")]
    if "audio-stereo" in args.cases:
        for minutes in args.minutes:
            wav = make_wav(work / f"{minutes:g}min-44k.wav", minutes, rate=44100, channels=2)
            yield "wav file, 44.1 kHz stereo", f"{minutes:g} min", "hubert-tiny-fsdd", [
                "hubert-tiny-fsdd", str(wav), "-o", str(work / "out.npy")]
    if "audio-folder" in args.cases:
        for count in args.files:
            folder = work / f"fsdd-{count}"
            folder.mkdir()
            for path in fsdd_files()[:count]:
                shutil.copy(path, folder)
            yield "wav folder", f"{count} files", "hubert-tiny-fsdd", ["hubert-tiny-fsdd", str(folder), "-o",
                                                                       str(work / "out.npy")]
    if "audio-long-folder" in args.cases:
        for count, folder in linked_folders(work, "long", args.long_files, args.long_minutes):
            yield "wav folder", f"{count} x {args.long_minutes:g} min", "hubert-tiny-fsdd", [
                "hubert-tiny-fsdd", str(folder), "-o", str(work / "out.npy")]
    if "tokens" in args.cases:
        for count, folder in linked_folders(work, "tokens", args.long_files, args.long_minutes):
            yield "wav folder, --pool none to .parquet", f"{count} x {args.long_minutes:g} min", "beats-tiny", [
                "beats-tiny", str(folder), "-o", str(work / "tokens.parquet"), "--pool", "none"]
    if "table" in args.cases:
        for rows in args.rows:
            for table in make_table(work, rows):
                yield f"table {table.suffix}", f"{rows} rows", "tjepa-adult", ["tjepa-adult", str(table), "-o",
                                                                               str(work / "out.parquet")]
    if "images" in args.cases:
        for count in args.images:
            folder = work / f"images-{count}"
            folder.mkdir()
            make_images(folder, count)
            yield "jpeg folder", f"{count} images", "gmml-vit-tiny-cifar10", ["gmml-vit-tiny-cifar10", str(folder),
                                                                             "-o", str(work / "out.npy")]
    if "graphs" in args.cases:
        for layer in ("-1", "1,2"):
            yield f"TU set, --layer {layer}", args.graph_set, f"graphmae-{args.graph_set}", [
                f"graphmae-{args.graph_set}", "--random-init", "0", "--dataset", args.graph_set, "--data",
                str(SHARED / "tu"), "--layer", layer, "-o", str(work / "out.npy")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="audio-file,audio-stereo,audio-folder,audio-long-folder,table,images")
    parser.add_argument("--minutes", default="10,60", help="audio-file: lengths in minutes")
    parser.add_argument("--files", default="256,2000", help="audio-folder: file counts")
    parser.add_argument("--long-files", default="1,12", help="audio-long-folder, tokens: file counts")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="audio-long-folder, tokens: minutes a file")
    parser.add_argument("--rows", default="100000,1000000", help="table: row counts")
    parser.add_argument("--images", default="2000,20000", help="images: image counts")
    parser.add_argument("--graph-set", default="nci1", help="graphs: a TU set of ../shared/data/tu (lower case)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    args.cases = args.cases.split(",")
    args.minutes = [float(value) for value in args.minutes.split(",")]
    args.files, args.long_files, args.rows, args.images = ([int(value) for value in text.split(",")]
                                                           for text in (args.files, args.long_files, args.rows,
                                                                        args.images))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        for kind, size, model, arguments in cases(args, Path(folder)):
            peak, seconds = run_embed(arguments, args.threads)
            rows.append({"input": kind, "size": size, "model": model, "peak_rss_mb": round(peak),
                         "wall_seconds": round(seconds, 1)})
            print(", ".join(str(value) for value in rows[-1].values()), file=sys.stderr, flush=True)
    if args.markdown:
        print(markdown_table(["input", "size", "model", "peak RSS (MB)", "wall (s)"],
                             [[f"{value:,}" if isinstance(value, int) else value for value in row.values()]
                              for row in rows]))
    else:
        print(json.dumps({"machine": machine_info(args.threads), "rows": rows}, indent=2))

if __name__ == "__main__":
    main()
