"""HuBERT embedding: the zoo's `HubertEncoder.embed` against transformers' `HubertModel`
called by hand on the same (random-init) weights and the same inputs.

Clip cases time both paths, measure their peak memory and compare their rows:
- zoo: `encoder.embed(waves, sampling_rate=16000, batch_size=B, progress=False)`;
- transformers: `Wav2Vec2FeatureExtractor` padding + `HubertModel(input_values,
  attention_mask)` on `encoder.model` in batches of B, then a mean over valid frames.
File cases (`10min`, `1h`) embed one 16-bit wav file through the zoo only (cut into 30 s
pieces) and report time and peak memory.

Each (variant, case) runs in a fresh subprocess. After a short warm-up of both paths,
`--repeats` rounds run both paths back to back (order alternating); every call is timed
and its peak RSS measured (VmHWM, reset before the call, minus RSS before it; see
common.py). The speed ratio is the median over rounds of the two calls' time ratio,
which cancels most of the drift in load on a shared machine.

    python benchmarks/bench_hubert_embed.py --markdown
    python benchmarks/bench_hubert_embed.py --variant tiny --cases 10min,1h --markdown
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakMemory, machine_info, markdown_table, mib, run_worker, serve

RATE = 16000
SEED = 0
PATHS = ("zoo", "transformers")


@dataclass(frozen=True)
class Case:
    """Clips of the given lengths (seconds) embedded as one list, or one wav file."""

    name: str
    description: str
    seconds: tuple[float, ...] = ()
    #: override of the zoo's AudioProcessor.chunk_seconds (None: keep its 30 s)
    chunk_seconds: float | None = None
    #: length of the one wav file of a file case (zoo only)
    file_seconds: float | None = None

    @property
    def audio_seconds(self) -> float:
        return self.file_seconds or sum(self.seconds)


CASES = {
    case.name: case
    for case in (
        Case("1s", "8 × 1 s", (1.0,) * 8),
        Case("10s", "4 × 10 s", (10.0,) * 4),
        # the zoo cuts it into two 30 s pieces (one batch), transformers takes it whole
        Case("60s", "1 × 60 s", (60.0,)),
        # the same clip with the zoo's chunking off: both paths compute the same thing
        Case("60s-whole", "1 × 60 s, zoo chunking off", (60.0,), chunk_seconds=3600.0),
        # one batch of 8 distinct lengths, unsorted
        Case("mixed", "8 clips of 0.9–11.8 s", (6.1, 0.9, 11.8, 2.4, 8.6, 1.6, 4.5, 3.3)),
        Case("10min", "one 10-min wav file", file_seconds=600.0),
        Case("1h", "one 1-hour wav file", file_seconds=3600.0),
    )
}
DEFAULT_CASES = ("1s", "10s", "60s", "mixed")


# ----------------------------------------------------------------------------- inputs


def synthetic_wave(seconds: float, rng: np.random.Generator, start: int = 0) -> np.ndarray:
    """A gliding tone with a syllable-rate envelope plus noise, float32 in [-1, 1].

    `start` (in samples) continues the tone of a longer recording written block by block.
    """
    t = (start + np.arange(round(seconds * RATE))) / RATE
    pitch = 140.0 + 40.0 * np.sin(2 * np.pi * 0.3 * t)
    tone = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / RATE) * (0.6 + 0.4 * np.sin(2 * np.pi * 2.0 * t))
    wave = tone + 0.05 * rng.standard_normal(t.shape)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def make_waves(case: Case) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED)
    return [synthetic_wave(seconds, rng) for seconds in case.seconds]


def write_recording(path: Path, seconds: float, block_seconds: float = 60.0) -> None:
    """A mono 16-bit wav of `seconds`, written block by block so that it never sits in memory."""
    import soundfile

    rng = np.random.default_rng(SEED)
    with soundfile.SoundFile(str(path), "w", samplerate=RATE, channels=1, subtype="PCM_16") as sink:
        done = 0
        total = round(seconds * RATE)
        while done < total:
            length = min(int(block_seconds * RATE), total - done)
            block = synthetic_wave(length / RATE, rng, start=done)
            sink.write((block * 32767).astype(np.int16))
            done += length


# ----------------------------------------------------------------------------- the two paths


def build_encoder(variant: str, chunk_seconds: float | None = None):
    import torch

    from modalities.speech.hubert.model import VARIANTS, HubertEncoder, HubertEncoderConfig

    torch.manual_seed(SEED)  # random init; speed and memory do not depend on the values
    encoder = HubertEncoder(HubertEncoderConfig(**VARIANTS[variant])).eval()
    if chunk_seconds is not None:
        encoder.processor.chunk_seconds = chunk_seconds
    return encoder


def zoo_embedder(encoder, waves: list[np.ndarray], batch_size: int) -> Callable[[], Any]:
    def embed():
        return encoder.embed(waves, sampling_rate=RATE, batch_size=batch_size, progress=False)

    return embed


def transformers_embedder(encoder, waves: list[np.ndarray], batch_size: int) -> Callable[[], Any]:
    """What a user writes by hand: pad with the feature extractor, run HubertModel, mean valid frames."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor

    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=RATE, padding_value=0.0,
        do_normalize=encoder.processor.do_normalize, return_attention_mask=True,
    )
    model = encoder.model.eval()

    def embed():
        rows = []
        for start in range(0, len(waves), batch_size):
            inputs = extractor(waves[start : start + batch_size], sampling_rate=RATE, padding=True, return_tensors="pt")
            hidden = model(inputs["input_values"], attention_mask=inputs["attention_mask"]).last_hidden_state
            frames = model._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1))
            weights = (torch.arange(hidden.shape[1])[None, :] < frames[:, None]).to(hidden.dtype).unsqueeze(-1)
            rows.append((hidden * weights).sum(1) / weights.sum(1))
        return torch.cat(rows)

    return embed


# ----------------------------------------------------------------------------- workers


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec["threads"])
    case = CASES[spec["case"]]
    encoder = build_encoder(spec["variant"], case.chunk_seconds)
    config = encoder.config
    spec = {**spec, "architecture": (
        f"{config.num_hidden_layers} layers × {config.hidden_size}, conv {len(config.conv_dim)} × "
        f"{config.conv_dim[0]} ({config.feat_extract_norm} norm), "
        f"{sum(p.numel() for p in encoder.parameters()) / 1e6:.1f} M parameters"
    )}
    with torch.inference_mode():
        if case.file_seconds is not None:
            return {**spec, **file_case(encoder, spec)}
        return {**spec, **clip_case(encoder, case, spec)}


def clip_case(encoder, case: Case, spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    waves = make_waves(case)
    embedders = {
        "zoo": zoo_embedder(encoder, waves, spec["batch_size"]),
        "transformers": transformers_embedder(encoder, waves, spec["batch_size"]),
    }
    for path in PATHS:  # thread pools, oneDNN kernels, lazy imports
        (zoo_embedder if path == "zoo" else transformers_embedder)(encoder, [waves[0][:RATE]], 1)()
    seconds: dict[str, list[float]] = {path: [] for path in PATHS}
    peaks: dict[str, list[int]] = {path: [] for path in PATHS}
    baseline = 0
    rows: dict[str, torch.Tensor] = {}
    for round_index in range(spec["repeats"]):
        for path in PATHS if round_index % 2 == 0 else PATHS[::-1]:
            with PeakMemory() as memory:
                start = time.perf_counter()
                rows[path] = embedders[path]()
                seconds[path].append(time.perf_counter() - start)
            peaks[path].append(memory.added)
            baseline = max(baseline, memory.baseline)
    ratios = [ref / zoo for zoo, ref in zip(seconds["zoo"], seconds["transformers"])]
    result: dict[str, Any] = {
        "seconds": seconds, "peak_added": {path: max(peaks[path]) for path in PATHS},
        "peaks_added": peaks, "baseline_rss": baseline, "memory_method": memory.method,
        "speed_ratio": statistics.median(ratios), "speed_ratios": ratios,
        "row_max_abs": float(rows["zoo"].abs().max()),
        "max_abs_diff": float((rows["zoo"] - rows["transformers"]).abs().max()),
    }
    if len(set(case.seconds)) > 1:
        # each clip alone through transformers: what the zoo's batched rows must equal
        alone = torch.cat([transformers_embedder(encoder, [wave], 1)() for wave in waves])
        result["max_abs_diff_alone"] = float((rows["zoo"] - alone).abs().max())
        result["max_abs_diff_batched_vs_alone"] = float((rows["transformers"] - alone).abs().max())
    return result


def file_case(encoder, spec: dict[str, Any]) -> dict[str, Any]:
    """Embed one wav file through the zoo, then measure what decoding it alone costs."""
    path = spec["file"]
    with PeakMemory() as memory:
        start = time.perf_counter()
        encoder.embed([path], batch_size=spec["batch_size"], progress=False)
        seconds = time.perf_counter() - start
    with PeakMemory() as decode:
        wave = encoder.processor.prepare(path)
    return {
        "seconds": {"zoo": [seconds]}, "peak_added": {"zoo": memory.added}, "baseline_rss": memory.baseline,
        "memory_method": memory.method, "decode_peak_added": decode.added,
        "waveform_bytes": wave.numel() * wave.element_size(), "pieces": len(encoder.processor.split(wave)),
    }


# ----------------------------------------------------------------------------- driver


def run(args: argparse.Namespace) -> dict[str, Any]:
    script = Path(__file__).resolve()
    scratch = Path(tempfile.mkdtemp(prefix="bench_hubert_"))
    results: list[dict[str, Any]] = []
    machine = machine_info(args.threads)
    started = time.perf_counter()
    try:
        for variant in args.variant:
            for name in args.cases:
                case = CASES[name]
                spec = {"variant": variant, "case": name, "threads": args.threads,
                        "batch_size": args.batch_size, "repeats": args.repeats}
                if case.file_seconds is not None:
                    spec["file"] = str(scratch / f"{name}.wav")
                    if not Path(spec["file"]).exists():
                        write_recording(Path(spec["file"]), case.file_seconds)
                result = run_worker(script, spec)
                results.append(result)
                times = ", ".join(f"{path} {statistics.median(s):.2f} s" for path, s in result["seconds"].items())
                peaks = ", ".join(f"{path} +{mib(p)} MiB" for path, p in result["peak_added"].items())
                print(f"{variant} {name}: {times}; peak {peaks}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    machine["load_average_1min_end"] = machine_info(args.threads)["load_average_1min"]
    machine["total_seconds"] = round(time.perf_counter() - started)
    return {"machine": machine, "args": {**vars(args), "json": str(args.json), "render": None}, "results": results}


def fmt_seconds(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def fmt_diff(value: float | None) -> str:
    return "—" if value is None else f"{value:.1e}"


def markdown(summary: dict[str, Any]) -> str:
    machine, args = summary["machine"], summary["args"]
    lines = [
        (
            f"{machine['date']}; {machine['cpu']}, {machine['cores']} cores shared with other jobs (1-min load "
            f"average {machine['load_average_1min']:.1f} at start, {machine['load_average_1min_end']:.1f} at end); "
            f"torch {machine['torch']} with {machine['torch_threads']} threads, transformers "
            f"{machine.get('transformers')}; batch size {args['batch_size']}; {machine['total_seconds']} s in all."
        ),
        "",
    ]
    architectures = {r["variant"]: r.get("architecture") for r in summary["results"]}
    lines += [f"- {variant}: {text}" for variant, text in architectures.items() if text] + [""]
    clips = [r for r in summary["results"] if "file" not in r]
    if clips:
        rows = []
        for r in clips:
            audio = CASES[r["case"]].audio_seconds
            zoo, ref = r["seconds"]["zoo"], r["seconds"]["transformers"]
            peak_zoo, peak_ref = r["peak_added"]["zoo"], r["peak_added"]["transformers"]
            rows.append([
                r["variant"], CASES[r["case"]].description, f"{audio:g}", fmt_seconds(zoo), fmt_seconds(ref),
                f"{audio / statistics.median(zoo):.1f}", f"{audio / statistics.median(ref):.1f}",
                f"{r['speed_ratio']:.2f}", mib(peak_zoo), mib(peak_ref), f"{peak_zoo / peak_ref:.2f}",
                fmt_diff(r["max_abs_diff"]), fmt_diff(r.get("max_abs_diff_alone")),
                fmt_diff(r.get("max_abs_diff_batched_vs_alone")),
            ])
        lines += [
            (
                f"Clips, {args['repeats']} round(s) per case; time = median (min–max) s per call; "
                "speed zoo/tf = median of per-round transformers time / zoo time (>1: zoo faster); "
                "peak = most RSS added by a call (MiB)."
            ),
            "",
            markdown_table(
                ["variant", "case", "audio s", "zoo s", "transformers s", "zoo audio-s/s", "tf audio-s/s",
                 "speed zoo/tf", "zoo peak", "tf peak", "peak zoo/tf", "max abs diff zoo vs tf",
                 "zoo vs tf, each clip alone", "tf batched vs tf alone"],
                rows,
            ),
            "",
        ]
    files = [r for r in summary["results"] if "file" in r]
    if files:
        rows = []
        for r in files:
            audio, seconds = CASES[r["case"]].audio_seconds, r["seconds"]["zoo"][0]
            rows.append([
                r["variant"], CASES[r["case"]].description, f"{audio:g}", r["pieces"], f"{seconds:.1f}",
                f"{audio / seconds:.1f}", mib(r["baseline_rss"]), mib(r["peak_added"]["zoo"]),
                mib(r["decode_peak_added"]), mib(r["waveform_bytes"]),
            ])
        lines += [
            "Files, zoo only, one call each; MiB of RSS.",
            "",
            markdown_table(
                ["variant", "input", "audio s", "pieces", "wall s", "audio-s/s", "RSS before",
                 "peak added", "decode-only peak added", "float32 waveform"],
                rows,
            ),
            "",
        ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                        help=f"comma-separated, from {', '.join(CASES)} (default: %(default)s)")
    parser.add_argument("--variant", default="tiny,base", help="comma-separated HuBERT variants (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of both paths per clip case (default: 3)")
    parser.add_argument("--batch-size", type=int, default=8, help="items per forward, both paths (default: 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default: 2)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables instead of JSON")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="print the tables of a results file written by --json, running nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is None:
        args.cases = [name.strip() for name in args.cases.split(",") if name.strip()]
        unknown = [name for name in args.cases if name not in CASES]
        if unknown:
            parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
        from modalities.speech.hubert.model import VARIANTS

        args.variant = [name.strip() for name in args.variant.split(",") if name.strip()]
        unknown = [name for name in args.variant if name not in VARIANTS]
        if unknown:
            parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
        if args.repeats < 1:
            parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    serve(args, worker, markdown, lambda: run(args))


if __name__ == "__main__":
    main()
