"""HuBERT embedding: the zoo's `HubertEncoder.embed` against transformers' `HubertModel`
called by hand on the same weights and inputs.

Short cases time both paths and compare their rows:
- zoo: `encoder.embed(waves, sampling_rate=16000, batch_size=B, progress=False)`;
- transformers: `Wav2Vec2FeatureExtractor` padding + `HubertModel(input_values,
  attention_mask)` on `encoder.model` in batches of B, then a mean over valid frames.
Long cases (`10min`, `1h`) embed one wav file through the zoo only (chunked into 30 s
windows) and report time and peak memory.

Every (variant, case, path) runs in a fresh subprocess: one untimed first call whose
peak RSS is the memory figure, then `--repeats` timed calls (median reported).

    python benchmarks/bench_hubert_embed.py --markdown
    python benchmarks/bench_hubert_embed.py --variant tiny --cases 10min,1h --markdown
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakMemory, machine_info, markdown_table, mib, report, run_worker, time_call  # noqa: E402

RATE = 16000
SEED = 0
PATHS = ("zoo", "transformers")


@dataclass(frozen=True)
class Case:
    """Clips of the given lengths (seconds), embedded as one list."""

    name: str
    description: str
    seconds: tuple[float, ...] = ()
    #: override of the zoo's AudioProcessor.chunk_seconds (None: keep its 30 s)
    chunk_seconds: Optional[float] = None
    #: one wav file of this many seconds, zoo only
    file_seconds: Optional[float] = None

    @property
    def audio_seconds(self) -> float:
        return self.file_seconds or sum(self.seconds)

    @property
    def equal_lengths(self) -> bool:
        return len(set(self.seconds)) == 1


CASES = {
    case.name: case
    for case in (
        Case("1s", "8 × 1 s", (1.0,) * 8),
        Case("10s", "4 × 10 s", (10.0,) * 4),
        Case("60s", "2 × 60 s", (60.0,) * 2),
        # the same clips with chunking off, so that both paths compute the same thing
        Case("60s-whole", "2 × 60 s, zoo chunking off", (60.0,) * 2, chunk_seconds=3600.0),
        # one batch of 8 distinct lengths, given unsorted
        Case("mixed", "8 clips of 1.3–29.8 s", (11.2, 1.3, 23.4, 4.1, 29.8, 7.6, 16.9, 2.7)),
        Case("10min", "one 10-min wav file", file_seconds=600.0),
        Case("1h", "one 1-hour wav file", file_seconds=3600.0),
    )
}
DEFAULT_CASES = ("1s", "10s", "60s", "mixed")


# ----------------------------------------------------------------------------- inputs


def synthetic_wave(seconds: float, rng: np.random.Generator, start: int = 0) -> np.ndarray:
    """Speech-band tones plus noise, float32 in [-1, 1]; `start` continues a longer recording."""
    t = (start + np.arange(int(round(seconds * RATE)))) / RATE
    pitch = 140.0 + 40.0 * np.sin(2 * np.pi * 0.3 * t)
    tone = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / RATE) * (0.6 + 0.4 * np.sin(2 * np.pi * 2.0 * t))
    wave = tone + 0.05 * rng.standard_normal(t.shape)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def make_waves(case: Case) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED)
    return [synthetic_wave(seconds, rng) for seconds in case.seconds]


def write_recording(path: Path, seconds: float, block_seconds: float = 60.0) -> None:
    """A mono 16-bit wav of `seconds`, written block by block so it never sits in memory."""
    import soundfile

    rng = np.random.default_rng(SEED)
    with soundfile.SoundFile(str(path), "w", samplerate=RATE, channels=1, subtype="PCM_16") as sink:
        done = 0.0
        while done < seconds:
            length = min(block_seconds, seconds - done)
            block = synthetic_wave(length, rng, start=int(round(done * RATE)))
            sink.write((block * 32767).astype(np.int16))
            done += length


# ----------------------------------------------------------------------------- worker


def build_encoder(variant: str, chunk_seconds: Optional[float]):
    import torch

    from modalities.speech.hubert.model import VARIANTS, HubertEncoder, HubertEncoderConfig

    torch.manual_seed(SEED)  # random init, the same weights in every worker
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


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec["threads"])
    case = CASES[spec["case"]]
    encoder = build_encoder(spec["variant"], case.chunk_seconds)
    checksum = float(sum(p.double().sum() for p in encoder.parameters()))
    result: dict[str, Any] = {**spec, "weights_checksum": checksum}
    with torch.inference_mode():
        if case.file_seconds is not None:
            return {**result, **long_file(encoder, spec)}
        waves = make_waves(case)
        make = zoo_embedder if spec["path"] == "zoo" else transformers_embedder
        embed = make(encoder, waves, spec["batch_size"])
        with PeakMemory() as memory:
            start = time.perf_counter()
            rows = embed()
            first_seconds = time.perf_counter() - start
        timing = time_call(embed, repeats=spec["repeats"], warmup=0)
        out = Path(spec["out"])
        np.save(out / f"{spec['variant']}-{case.name}-{spec['path']}.npy", rows.float().numpy())
        if spec["path"] == "transformers" and not case.equal_lengths:
            # each clip alone: the reference the zoo's batched rows must equal
            alone = torch.cat([transformers_embedder(encoder, [wave], 1)() for wave in waves])
            np.save(out / f"{spec['variant']}-{case.name}-alone.npy", alone.float().numpy())
    return {
        **result,
        "baseline_rss": memory.baseline, "peak_added": memory.added, "memory_method": memory.method,
        "first_call_s": first_seconds, "seconds": timing.seconds, "median_s": timing.median,
    }


def long_file(encoder, spec: dict[str, Any]) -> dict[str, Any]:
    """Embed one wav file (zoo), then measure what decoding it alone costs."""
    path = spec["file"]
    with PeakMemory() as memory:
        start = time.perf_counter()
        encoder.embed([path], batch_size=spec["batch_size"], progress=False)
        seconds = time.perf_counter() - start
    with PeakMemory() as decode:
        wave = encoder.processor.prepare(path)
    pieces = len(encoder.processor.split(wave))
    return {
        "baseline_rss": memory.baseline, "peak_added": memory.added, "memory_method": memory.method,
        "seconds": [seconds], "median_s": seconds, "decode_peak_added": decode.added,
        "waveform_bytes": wave.numel() * wave.element_size(), "pieces": pieces,
    }


# ----------------------------------------------------------------------------- driver


def max_abs_diff(out: Path, name_a: str, name_b: str) -> Optional[float]:
    a, b = out / f"{name_a}.npy", out / f"{name_b}.npy"
    if not (a.exists() and b.exists()):
        return None
    return float(np.abs(np.load(a) - np.load(b)).max())


def run(args: argparse.Namespace) -> dict[str, Any]:
    script = Path(__file__).resolve()
    out = Path(tempfile.mkdtemp(prefix="bench_hubert_"))
    results: list[dict[str, Any]] = []
    try:
        for variant in args.variant:
            for name in args.cases:
                case = CASES[name]
                spec = dict(variant=variant, case=name, threads=args.threads, batch_size=args.batch_size,
                            repeats=args.repeats, out=str(out))
                if case.file_seconds is not None:
                    file = out / f"{name}.wav"
                    if not file.exists():
                        write_recording(file, case.file_seconds)
                    runs = [run_worker(script, {**spec, "path": "zoo", "file": str(file)})]
                else:
                    runs = [run_worker(script, {**spec, "path": path}) for path in PATHS]
                    if len({r["weights_checksum"] for r in runs}) != 1:
                        raise RuntimeError(f"{variant}/{name}: the two workers built different weights")
                    stem = f"{variant}-{name}"
                    runs[0]["max_abs_diff"] = max_abs_diff(out, f"{stem}-zoo", f"{stem}-transformers")
                    runs[0]["max_abs_diff_alone"] = max_abs_diff(out, f"{stem}-zoo", f"{stem}-alone")
                    runs[0]["max_abs_diff_batched_vs_alone"] = max_abs_diff(out, f"{stem}-transformers", f"{stem}-alone")
                    runs[0]["row_max_abs"] = float(np.abs(np.load(out / f"{stem}-zoo.npy")).max())
                for r in runs:
                    print(f"{variant:5s} {name:9s} {r['path']:12s} median {r['median_s']:7.2f} s  "
                          f"peak +{mib(r['peak_added'])} MiB", file=sys.stderr, flush=True)
                results.extend(runs)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"machine": machine_info(args.threads), "args": vars(args), "results": results}


def fmt_seconds(r: dict[str, Any]) -> str:
    if len(r["seconds"]) == 1:
        return f"{r['median_s']:.2f}"
    low, high = min(r["seconds"]), max(r["seconds"])
    return f"{r['median_s']:.2f} ({low:.2f}–{high:.2f})"


def fmt_diff(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.1e}"


def markdown(summary: dict[str, Any]) -> str:
    machine = summary["machine"]
    lines = [
        f"{machine['date']}, {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
        f"({machine['torch_threads']} threads), transformers {machine.get('transformers')}, "
        f"batch size {summary['args']['batch_size']}, {summary['args']['repeats']} timed repeats after one "
        f"untimed first call (time: median (min–max)); peak = RSS high-water mark of the first call "
        f"minus RSS before it; ratios are zoo / transformers.",
        "",
    ]
    results = summary["results"]
    short = [r for r in results if "file" not in r]
    if short:
        rows = []
        by_key = {(r["variant"], r["case"], r["path"]): r for r in short}
        for (variant, name, path), zoo in by_key.items():
            if path != "zoo":
                continue
            ref = by_key[(variant, name, "transformers")]
            audio = CASES[name].audio_seconds
            rows.append([
                variant, CASES[name].description, f"{audio:g}",
                fmt_seconds(zoo), fmt_seconds(ref),
                f"{audio / zoo['median_s']:.1f}", f"{audio / ref['median_s']:.1f}",
                f"{ref['median_s'] / zoo['median_s']:.2f}",
                mib(zoo["peak_added"]), mib(ref["peak_added"]), f"{zoo['peak_added'] / ref['peak_added']:.2f}",
                fmt_diff(zoo["max_abs_diff"]), fmt_diff(zoo["max_abs_diff_alone"]),
                fmt_diff(zoo["max_abs_diff_batched_vs_alone"]),
            ])
        lines.append(markdown_table(
            ["variant", "case", "audio s", "zoo s", "transformers s", "zoo audio-s/s", "transformers audio-s/s",
             "throughput zoo/tf", "zoo peak MiB", "tf peak MiB", "peak zoo/tf",
             "max abs diff zoo vs tf", "zoo vs tf item alone", "tf batched vs tf alone"],
            rows,
        ))
        lines.append("")
    long = [r for r in results if "file" in r]
    if long:
        rows = [[
            r["variant"], CASES[r["case"]].description, f"{CASES[r['case']].audio_seconds:g}", r["pieces"],
            f"{r['median_s']:.1f}", f"{CASES[r['case']].audio_seconds / r['median_s']:.1f}",
            mib(r["peak_added"]), mib(r["decode_peak_added"]), mib(r["waveform_bytes"]),
        ] for r in long]
        lines.append(markdown_table(
            ["variant", "input", "audio s", "30 s pieces", "wall s", "audio-s/s", "peak MiB",
             "decode-only peak MiB", "float32 waveform MiB"],
            rows,
        ))
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                        help=f"comma-separated, from {', '.join(CASES)} (default: %(default)s)")
    parser.add_argument("--variant", default="tiny,base", help="comma-separated HuBERT variants (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per path after the first (default: 3)")
    parser.add_argument("--batch-size", type=int, default=8, help="items per forward, both paths (default: 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default: 2)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables instead of JSON")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is None:
        args.cases = [name.strip() for name in args.cases.split(",") if name.strip()]
        unknown = [name for name in args.cases if name not in CASES]
        if unknown:
            parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
        args.variant = [name.strip() for name in args.variant.split(",") if name.strip()]
        from modalities.speech.hubert.model import VARIANTS

        if [name for name in args.variant if name not in VARIANTS]:
            parser.error(f"unknown variant in {args.variant}; choose from {list(VARIANTS)}")
        if args.repeats < 1:
            parser.error("--repeats must be at least 1")
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        report(worker(json.loads(args.worker)))
        return
    summary = run(args)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    print(markdown(summary) if args.markdown else json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
